"""Order is not guaranteed: any permutation of a subscription's events, with duplicates, ends in
the newest truth (property-based, on SQLite and PostgreSQL)."""
from __future__ import annotations

import itertools
import time
from datetime import datetime, timezone

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from service.db import get_session
from service.domain.membership import membership_status_for_stripe
from sqlalchemy import select

from service.models import Account, StripeSubscription

from ..support.events import apply_events, event, post_event
from ..support.factories import make_account
from ..support.stripe_objects import subscription
from ..support.stripe_standin import SubscriptionTruth

# One step of a lifecycle: what the subscription says after a change.
STEP = st.tuples(
    st.sampled_from(["active", "past_due", "unpaid", "paused", "trialing", "active"]),
    st.booleans(),                # cancel_at_period_end
    st.integers(min_value=0, max_value=2),  # seconds since the previous change (0: same second)
)

_ids = itertools.count(1)


@st.composite
def lifecycles(draw):
    """created incomplete, then changes, maybe ending canceled; then deliveries with duplicates."""
    first = draw(st.sampled_from(["incomplete", "active", "trialing"]))
    steps = draw(st.lists(STEP, min_size=1, max_size=6))
    ends_canceled = draw(st.booleans())
    base = int(time.time()) - 10_000
    snapshots = [(first, False, base)]
    t = base
    for status, cancel_flag, gap in steps:
        t += gap
        snapshots.append((status, cancel_flag and status == "active", t))
    if ends_canceled:
        t += draw(st.integers(min_value=0, max_value=2))
        snapshots.append(("canceled", False, t))
    n = len(snapshots)
    order = draw(st.permutations(range(n)))
    dupes = draw(st.lists(st.integers(min_value=0, max_value=n - 1), max_size=4))
    positions = [draw(st.integers(min_value=0, max_value=n + i)) for i in range(len(dupes))]
    deliveries = list(order)
    for d, pos in zip(dupes, positions):
        deliveries.insert(pos, d)
    # When the worker runs: after some deliveries (the queue then holds several events, which it
    # applies in Stripe's order), and always at the end.
    runs = draw(st.sets(st.integers(min_value=0, max_value=len(deliveries) - 1)))
    return snapshots, deliveries, runs


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(case=lifecycles())
def test_any_permutation_with_duplicates_ends_in_the_newest_truth(app, client, stripe_api, case):
    """Through the whole path: accepted by the webhook, queued, applied by the worker whenever
    it happens to run."""
    snapshots, deliveries, runs = case
    n = next(_ids)
    sub_id, cus_id = f"sub_ORD{n}", f"cus_ORD{n}"
    member = make_account(app, email=f"order{n}@example.org", customer=cus_id)
    objects = []
    for i, (status, cancel_flag, created) in enumerate(snapshots):
        objects.append(subscription(id=sub_id, customer=cus_id, status=status, member_id=member,
                                    cancel_at_period_end=cancel_flag, period_start=created,
                                    period_end=created + 30 * 86400 + i))
    events = []
    for i, obj in enumerate(objects):
        kind = "created" if i == 0 else ("deleted" if obj["status"] == "canceled" else "updated")
        events.append(event(f"customer.subscription.{kind}", obj, created=snapshots[i][2]))
    # Stripe's current truth is the newest snapshot, as of the newest change.
    newest = objects[-1]
    SubscriptionTruth(stripe_api).set(newest, as_of=snapshots[-1][2])

    for position, idx in enumerate(deliveries):
        resp = post_event(client, events[idx], apply=False)
        assert resp.status_code == 200
        if position in runs:
            apply_events(app)
    apply_events(app)

    with app.app_context():
        session = get_session()
        account = session.get(Account, member)
        row = session.query(StripeSubscription).filter_by(stripe_id=sub_id).one()
        assert row.status == newest["status"]
        assert account.membership.status == membership_status_for_stripe(newest["status"])
        # Paid through the period's end (behind on payment: its start), an earlier cancel date,
        # or the day it ended.
        item = newest["items"]["data"][0]
        unpaid = newest["status"] in ("past_due", "unpaid", "paused")
        ends = [item["current_period_start" if unpaid else "current_period_end"], newest.get("cancel_at"),
                newest.get("ended_at")]
        end = min(e for e in ends if e is not None)
        assert account.membership.paid_through == datetime.fromtimestamp(end, tz=timezone.utc)
        assert account.membership.cancel_at_period_end == newest["cancel_at_period_end"]
        session.close()


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(case=lifecycles(), quantities=st.lists(st.integers(min_value=1, max_value=4), min_size=8, max_size=8))
def test_an_organisations_events_in_any_order_end_in_the_newest_truth(app, client, stripe_api, case, quantities):
    """The same property for an organisation's subscription: its state, its seat count and its
    seats (the newest beyond the quantity suspended) follow the newest snapshot."""
    from service.domain.membership import MembershipStatus
    from service.models import Organisation, Seat

    from ..support.organisations import give_seat, make_org, org_level, org_subscription

    snapshots, deliveries, runs = case
    n = next(_ids)
    sub_id, cus_id = f"sub_ORGORD{n}", f"cus_ORGORD{n}"
    if n == 1 or not _has_org_level(app):
        org_level(app)
    org_id = make_org(app, admin_id=None, name=f"Order Org {n}", customer=cus_id)
    readers = [make_account(app, email=f"orgorder{n}-{i}@example.org") for i in range(3)]
    with app.app_context():  # seats to fit: the organisation starts with room for all three
        s = get_session()
        s.get(Organisation, org_id).seats = 3
        s.commit()
    for r in readers:
        give_seat(app, org_id, r)
    objects = [org_subscription(id=sub_id, customer=cus_id, quantity=quantities[i], status=status,
                                period_start=created, period_end=created + 365 * 86400 + i)
               for i, (status, _cancel, created) in enumerate(snapshots)]
    events = [event(f"customer.subscription.{'created' if i == 0 else 'updated'}", obj, created=snapshots[i][2])
              for i, obj in enumerate(objects)]
    newest = objects[-1]
    SubscriptionTruth(stripe_api).set(newest, as_of=snapshots[-1][2])
    for position, idx in enumerate(deliveries):
        assert post_event(client, events[idx], apply=False).status_code == 200
        if position in runs:
            apply_events(app)
    apply_events(app)

    quantity = newest["items"]["data"][0]["quantity"]
    with app.app_context():
        s = get_session()
        o = s.get(Organisation, org_id)
        assert o.status == membership_status_for_stripe(newest["status"])
        assert o.seats == quantity
        held = s.scalars(select(Seat).where(Seat.organisation_id == org_id).order_by(Seat.taken_at, Seat.id)).all()
        assert [seat.status for seat in held] == ["active"] * min(3, quantity) + ["suspended"] * max(0, 3 - quantity)
        entitles = o.status in (MembershipStatus.ACTIVE, MembershipStatus.PAST_DUE)
        for seat in held:
            m = s.get(Account, seat.account_id).membership
            expected = MembershipStatus.ORGANISATION if seat.status == "active" and entitles and _seat_live(o) \
                else MembershipStatus.PENDING
            assert m.status == expected, (seat.status, o.status)
        s.close()


def _has_org_level(app) -> bool:
    from service.models import Level

    with app.app_context():
        return get_session().scalar(select(Level.id).where(Level.organisation.is_(True))) is not None


def _seat_live(o) -> bool:
    """Past due entitles only within the grace, counted from the unpaid period's start."""
    from service.membership.service import grace
    from service.db import utcnow

    if o.paid_through is None or o.status.value != "past_due":
        return True
    return utcnow() < o.paid_through + grace()
