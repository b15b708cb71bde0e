"""The membership rules on their own: `derive` and `entitled`, table by table, no database."""
from __future__ import annotations

import ast
import itertools
from datetime import datetime, timedelta, timezone
from pathlib import Path

import pytest

from service.domain.membership import (
    CUSTOM_LEVEL_NAME,
    Catalogue,
    Comp,
    Interval,
    Level,
    MembershipStatus as S,
    Parts,
    Price,
    Subscription,
    Via,
    derive,
    entitled,
    membership_status_for_stripe,
)

NOW = datetime(2026, 11, 27, 12, 0, tzinfo=timezone.utc)
DAY = timedelta(days=1)
GRACE = timedelta(days=14)

MONTHLY = Level("Member", 500, "usd", Interval.MONTH)
OLD_MONTHLY = Level("Member", 400, "usd", Interval.MONTH)  # the price before the last raise
YEARLY = Level("Member, yearly", 5000, "usd", Interval.YEAR)
CATALOGUE = Catalogue("prod_membership", {"price_now": MONTHLY, "price_old": OLD_MONTHLY, "price_year": YEARLY})

PRICES = {
    "current": Price("price_now", "prod_membership", 500, "usd", Interval.MONTH),
    "archived": Price("price_old", "prod_membership", 400, "usd", Interval.MONTH),
    # A "give more" amount: a price made on the fly under the membership product.
    "custom": Price("price_adhoc", "prod_membership", 2500, "usd", Interval.MONTH),
    # A donation or a shop item: another product.
    "foreign": Price("price_mug", "prod_shop", 1500, "usd", Interval.MONTH),
}

COMPS = {
    "none": Comp(),
    "open-ended": Comp(granted=True),
    "ends later": Comp(granted=True, until=NOW + 10 * DAY),
    "ended": Comp(granted=True, until=NOW - DAY),
}

# Where "now" falls for a subscription whose period ends at `end`.
MOMENTS = {
    "in period": NOW + 10 * DAY,
    "in grace": NOW - 3 * DAY,           # the period ended 3 days ago; grace is 14
    "beyond grace": NOW - 20 * DAY,
}

STRIPE_STATUSES = ["incomplete", "active", "trialing", "past_due", "paused", "unpaid", "canceled",
                   "incomplete_expired"]


def sub(status="active", price="current", end=NOW + 10 * DAY, created=NOW - 30 * DAY, sub_id="sub_1", **kw):
    return Subscription(id=sub_id, stripe_status=status, prices=(PRICES[price],), current_period_end=end,
                        created_at=created, **kw)


def run(subs=(), comp=COMPS["none"], catalogue=CATALOGUE):
    return derive(Parts(subscriptions=list(subs), catalogue=catalogue, now=NOW, grace=GRACE, comp=comp))


def is_entitled(derived):
    return derived.entitled(NOW, GRACE)


def via(derived):
    return derived.standing(NOW, GRACE)[1]


def test_domain_module_imports_neither_flask_nor_stripe_nor_sqlalchemy():
    for name in ("membership.py", "money.py", "newsletter.py"):
        source = Path(__file__).resolve().parents[2] / "service" / "domain" / name
        tree = ast.parse(source.read_text())
        imported = {n.names[0].name.split(".")[0] for n in ast.walk(tree) if isinstance(n, ast.Import)}
        imported |= {(n.module or "").split(".")[0] for n in ast.walk(tree) if isinstance(n, ast.ImportFrom)}
        assert not imported & {"flask", "stripe", "sqlalchemy", "service"}, name


def test_unknown_stripe_status_is_an_error_not_a_guess():
    with pytest.raises(ValueError):
        membership_status_for_stripe("exploded")


# --- one table: every Stripe status, on the current price, no comp, in its period ------------

@pytest.mark.parametrize("stripe_status, status, entitled_now, expected_via", [
    ("incomplete", S.PENDING, False, None),
    ("active", S.ACTIVE, True, Via.MEMBERSHIP),
    ("trialing", S.ACTIVE, True, Via.MEMBERSHIP),
    ("past_due", S.PAST_DUE, True, Via.MEMBERSHIP),
    ("paused", S.PAUSED, False, None),
    ("unpaid", S.LAPSED, False, None),
    ("canceled", S.CANCELED, False, None),
    ("incomplete_expired", S.CANCELED, False, None),
])
def test_each_stripe_status(stripe_status, status, entitled_now, expected_via):
    derived = run([sub(stripe_status)])
    assert (derived.status, is_entitled(derived), via(derived)) == (status, entitled_now, expected_via)
    assert derived.paid_through == NOW + 10 * DAY
    assert derived.level == (None if status == S.PENDING else MONTHLY)


# --- the grace boundary of past_due --------------------------------------------------------

@pytest.mark.parametrize("moment, entitled_now", [("in period", True), ("in grace", True), ("beyond grace", False)])
def test_past_due_entitles_until_paid_through_plus_grace(moment, entitled_now):
    derived = run([sub("past_due", end=MOMENTS[moment])])
    assert derived.status == S.PAST_DUE and is_entitled(derived) is entitled_now


def test_the_grace_boundary_is_exact():
    end = NOW - GRACE
    assert entitled(S.PAST_DUE, end + timedelta(seconds=1), NOW, GRACE) is True
    assert entitled(S.PAST_DUE, end, NOW, GRACE) is False


def test_entitlement_is_decided_at_the_moment_of_the_read():
    derived = run([sub("past_due", end=NOW - 10 * DAY)])
    assert derived.entitled(NOW, GRACE) is True
    assert derived.entitled(NOW + 5 * DAY, GRACE) is False  # no job ran in between


# --- comps ---------------------------------------------------------------------------------

@pytest.mark.parametrize("comp, status, entitled_now, paid_through", [
    ("none", S.PENDING, False, None),
    ("open-ended", S.COMPED, True, None),
    ("ends later", S.COMPED, True, NOW + 10 * DAY),
    ("ended", S.PENDING, False, None),
])
def test_a_comp_alone(comp, status, entitled_now, paid_through):
    derived = run([], COMPS[comp])
    assert (derived.status, is_entitled(derived), derived.paid_through) == (status, entitled_now, paid_through)
    assert via(derived) == (Via.COMP if status == S.COMPED else None)


def test_a_comp_with_an_end_date_stops_entitling_at_its_end_without_any_job():
    derived = run([], COMPS["ends later"])
    assert derived.entitled(NOW + 9 * DAY, GRACE) is True
    assert derived.entitled(NOW + 11 * DAY, GRACE) is False


def test_a_paying_subscription_takes_over_from_a_comp_and_a_comp_covers_a_dead_one():
    assert run([sub("active")], COMPS["open-ended"]).status == S.ACTIVE
    assert run([sub("canceled")], COMPS["open-ended"]).status == S.COMPED
    assert run([sub("past_due", end=MOMENTS["beyond grace"])], COMPS["open-ended"]).status == S.COMPED
    assert run([sub("canceled")], COMPS["ended"]).status == S.CANCELED


def test_a_deleted_customer_cancels_and_never_ends_on_a_date():
    derived = run([sub("active", customer_deleted=True, cancel_at_period_end=True)])
    assert derived.status == S.CANCELED and derived.cancel_at_period_end is False


# --- prices: the catalogue, archived prices, custom amounts, other products --------------------

@pytest.mark.parametrize("price, level", [
    ("current", MONTHLY),
    ("archived", OLD_MONTHLY),
    ("custom", Level(CUSTOM_LEVEL_NAME, 2500, "usd", Interval.MONTH)),
])
def test_every_membership_price_counts_and_names_its_level(price, level):
    derived = run([sub("active", price=price)])
    assert derived.status == S.ACTIVE and derived.level == level


def test_a_yearly_level_is_worth_a_twelfth_each_month():
    assert run([sub("active", price="current")]).level.monthly_value == 500
    yearly = Subscription(id="sub_y", stripe_status="active", prices=(Price("price_year", "prod_membership", 5000,
                          "usd", Interval.YEAR),), current_period_end=NOW + 300 * DAY)
    assert run([yearly]).level == YEARLY and YEARLY.monthly_value == 417


def test_a_price_that_left_the_catalogue_still_counts_when_it_is_of_the_membership_product():
    catalogue = Catalogue("prod_membership", {"price_now": MONTHLY})
    assert run([sub("active", price="archived")], catalogue=catalogue).status == S.ACTIVE


def test_another_product_never_entitles_not_even_alone():
    derived = run([sub("active", price="foreign")])
    assert derived.status == S.PENDING and not is_entitled(derived)
    assert run([sub("active", price="foreign")], COMPS["open-ended"]).status == S.COMPED
    with_membership = run([sub("active", price="foreign", sub_id="sub_mug", created=NOW),
                           sub("canceled", sub_id="sub_m")])
    assert with_membership.status == S.CANCELED and with_membership.subscription_id == "sub_m"


def test_without_a_known_product_only_catalogue_prices_count():
    catalogue = Catalogue(None, {"price_now": MONTHLY})
    assert run([sub("active", price="custom")], catalogue=catalogue).status == S.PENDING
    assert run([sub("active", price="current")], catalogue=catalogue).status == S.ACTIVE


# --- several subscriptions -----------------------------------------------------------------

def test_a_paying_subscription_decides_over_a_newer_dead_one():
    derived = run([sub("active", sub_id="sub_old", created=NOW - 90 * DAY),
                   sub("canceled", sub_id="sub_new", created=NOW - DAY)])
    assert (derived.status, derived.subscription_id) == (S.ACTIVE, "sub_old")


def test_among_dead_ones_the_newest_started_decides():
    derived = run([sub("canceled", sub_id="sub_old", created=NOW - 90 * DAY),
                   sub("unpaid", sub_id="sub_new", created=NOW - DAY)])
    assert (derived.status, derived.subscription_id) == (S.LAPSED, "sub_new")


def test_two_paying_subscriptions_are_paying_twice():
    assert run([sub("active", sub_id="a"), sub("past_due", sub_id="b")]).paying_twice is True
    assert run([sub("active", sub_id="a"), sub("canceled", sub_id="b")]).paying_twice is False
    assert run([sub("active", sub_id="a"), sub("active", sub_id="b", price="foreign")]).paying_twice is False
    beyond = sub("past_due", sub_id="b", end=MOMENTS["beyond grace"])
    assert run([sub("active", sub_id="a"), beyond]).paying_twice is False


def test_cancel_at_period_end_or_on_a_date_ends_on_the_earlier_date():
    derived = run([sub("active", cancel_at=NOW + 3 * DAY)])
    assert derived.cancel_at_period_end is True and derived.paid_through == NOW + 3 * DAY
    assert run([sub("active", cancel_at_period_end=True)]).cancel_at_period_end is True


# --- the whole cross product: invariants that hold in every combination ------------------------

CASES = list(itertools.product(STRIPE_STATUSES, COMPS, MOMENTS, PRICES))


@pytest.mark.parametrize("stripe_status, comp, moment, price", CASES)
def test_invariants_over_status_comp_grace_and_price(stripe_status, comp, moment, price):
    derived = run([sub(stripe_status, price=price, end=MOMENTS[moment])], COMPS[comp])
    alone = run([], COMPS[comp])
    bare = run([sub(stripe_status, price=price, end=MOMENTS[moment])])
    # A comp never takes entitlement away; a subscription to another product never gives any.
    assert is_entitled(derived) >= is_entitled(bare)
    if price == "foreign":
        assert derived == alone
    # Archived and current catalogue prices are judged alike (only the level's amount differs).
    if price == "archived":
        twin = run([sub(stripe_status, price="current", end=MOMENTS[moment])], COMPS[comp])
        assert (derived.status, derived.paid_through, via(derived)) == (twin.status, twin.paid_through, via(twin))
    # Without a comp, a membership price entitles exactly when Stripe's status says it pays,
    # past due only until paid-through plus grace.
    if comp in ("none", "ended") and price != "foreign":
        status = membership_status_for_stripe(stripe_status)
        expected = status == S.ACTIVE or (status == S.PAST_DUE and moment != "beyond grace")
        assert is_entitled(derived) is expected
    # Via says what entitles, and only what entitles has one.
    assert (via(derived) is not None) == is_entitled(derived)


def test_canceled_at_once_is_paid_through_the_day_it_ended_not_the_period_end():
    derived = run([sub("canceled", ended_at=NOW - DAY)])
    assert derived.status == S.CANCELED and derived.paid_through == NOW - DAY


# --- a failed renewal: Stripe moves the period forward before charging ------------------------

def test_past_due_counts_its_grace_from_the_start_of_the_unpaid_period():
    """After a failed renewal, current_period_end is the end of a period nobody paid for."""
    failed_3_days_ago = sub("past_due", current_period_start=NOW - 3 * DAY, end=NOW + 27 * DAY)
    failed_30_days_ago = sub("past_due", current_period_start=NOW - 30 * DAY, end=NOW + 335 * DAY)  # yearly
    assert run([failed_3_days_ago]).paid_through == NOW - 3 * DAY and is_entitled(run([failed_3_days_ago]))
    assert not is_entitled(run([failed_30_days_ago]))
    unpaid = run([sub("unpaid", current_period_start=NOW - 40 * DAY, end=NOW + 20 * DAY)])
    assert unpaid.paid_through == NOW - 40 * DAY


def test_a_live_comp_is_a_floor_when_the_grace_runs_out_between_events():
    derived = run([sub("past_due", current_period_start=NOW - 10 * DAY)], COMPS["open-ended"])
    assert derived.status == S.PAST_DUE and via(derived) == Via.MEMBERSHIP
    later = NOW + 10 * DAY  # no event since: the grace is over, the comp is not
    assert derived.standing(later, GRACE) == (True, Via.COMP)
    ended = run([sub("past_due", current_period_start=NOW - 10 * DAY)], COMPS["ends later"])
    assert ended.standing(NOW + 30 * DAY, GRACE) == (False, None)
