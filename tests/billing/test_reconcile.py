"""`flask stripe reconcile` repairs drift from lost webhooks, and a second run changes nothing."""
from __future__ import annotations

import time

from service.db import get_session
from service.domain.membership import MembershipStatus
from service.models import Account

from ..support.events import event, post_event
from ..support.factories import make_account
from ..support.stripe_objects import subscription
from ..support.stripe_standin import Reply, stripe_error


def _serve_list(stripe_api, subs, page_size=2, as_of=None):
    def reply(rec):
        start = 0
        if rec.query.get("starting_after"):
            start = [s["id"] for s in subs].index(rec.query["starting_after"]) + 1
        page = subs[start:start + page_size]
        return Reply(200, {"object": "list", "url": "/v1/subscriptions", "data": page,
                           "has_more": start + page_size < len(subs)}, date=as_of)
    stripe_api.on("GET", "/v1/subscriptions", reply)


def _status(app, member):
    with app.app_context():
        return get_session().get(Account, member).membership.status


def test_lost_webhook_is_repaired_and_second_run_changes_nothing(app, client, runner, stripe_api):
    now = int(time.time())
    a = make_account(app, email="a@example.org", customer="cus_sub_a")
    b = make_account(app, email="b@example.org", customer="cus_sub_b")
    c = make_account(app, email="c@example.org", customer="cus_sub_c")
    period = {"period_start": now - 86400, "period_end": now + 29 * 86400}
    for m, sid in ((a, "sub_a"), (b, "sub_b"), (c, "sub_c")):
        post_event(client, event("customer.subscription.created",
                                 subscription(id=sid, customer=f"cus_{sid}", status="active", member_id=m, **period),
                                 created=now - 600))
    # In Stripe, b's renewal failed and c canceled; both webhooks were lost.
    truth = [
        subscription(id="sub_a", customer="cus_sub_a", status="active", member_id=a, **period),
        subscription(id="sub_b", customer="cus_sub_b", status="past_due", member_id=b, **period),
        subscription(id="sub_c", customer="cus_sub_c", status="canceled", member_id=c, **period),
    ]
    _serve_list(stripe_api, truth)
    from ..support.stripe_standin import SubscriptionTruth

    current = SubscriptionTruth(stripe_api)
    for obj in truth:
        current.set(obj)

    first = runner.invoke(args=["stripe", "reconcile"])
    assert first.exit_code == 0, first.output
    assert "sub_b (member %d <b@example.org>): subscription active" % b in first.output
    assert "membership active -> past_due" in first.output
    assert "membership active -> canceled" in first.output
    assert "sub_a" not in first.output.replace("checked", "")
    assert "checked 3 subscriptions" in first.output
    assert (_status(app, a), _status(app, b), _status(app, c)) == (
        MembershipStatus.ACTIVE, MembershipStatus.PAST_DUE, MembershipStatus.CANCELED)
    # Paginated: two pages of two.
    pages = stripe_api.calls("GET", "/v1/subscriptions")
    assert [p.query.get("starting_after") for p in pages] == [None, "sub_b"]
    assert pages[0].query["status"] == "all"

    second = runner.invoke(args=["stripe", "reconcile"])
    assert second.exit_code == 0
    assert second.output.strip() == "checked 3 subscriptions, changed 0"


def test_reconcile_never_overwrites_a_newer_webhook(app, client, runner, stripe_api):
    now = int(time.time())
    m = make_account(app, customer="cus_n")
    period = {"period_start": now - 86400, "period_end": now + 29 * 86400}  # the same in every snapshot

    def canceled():
        return {**subscription(id="sub_n", customer="cus_n", status="canceled", member_id=m, **period),
                "canceled_at": now, "ended_at": now}
    post_event(client, event("customer.subscription.updated", canceled(), created=now))
    # A list page served before that change still says active; the repair reads the
    # subscription again under the lock, and Stripe now says canceled.
    _serve_list(stripe_api, [subscription(id="sub_n", customer="cus_n", status="active", member_id=m, **period)],
                as_of=now - 60)
    from ..support.stripe_standin import SubscriptionTruth

    SubscriptionTruth(stripe_api).set(canceled())
    result = runner.invoke(args=["stripe", "reconcile"])
    assert result.exit_code == 0 and "changed 0" in result.output
    assert _status(app, m) == MembershipStatus.CANCELED


def test_reconcile_reports_stripe_errors_clearly(runner, stripe_api):
    stripe_api.on("GET", "/v1/subscriptions", stripe_error(401, "invalid_request_error", "Invalid API Key"))
    result = runner.invoke(args=["stripe", "reconcile"])
    assert result.exit_code == 1
    assert "Error: Stripe: Stripe rejected the API key" in result.output


def test_email_is_the_last_resort_link_for_readers_only_and_flags_them(app, runner, stripe_api):
    """A subscription no checkout of ours links (a Payment Link, the Dashboard): reconcile links
    it by email to a reader without a customer, and flags the member; never a staff account,
    never a reader who already has a customer."""
    from service.domain.membership import Role
    from sqlalchemy import select

    from service.models import StripeCustomer
    from ..support.stripe_standin import SubscriptionTruth

    reader = make_account(app, email="reader@example.org", verified=True)
    make_account(app, email="editor@example.org", role=Role.STAFF, verified=True)
    paying = make_account(app, email="paying@example.org", customer="cus_own")
    subs = [subscription(id=f"sub_{n}", customer=f"cus_{n}", status="active") for n in ("r", "e", "p")]
    _serve_list(stripe_api, subs, page_size=10)
    truth = SubscriptionTruth(stripe_api)
    for obj, email in zip(subs, ("READER@example.org", "editor@example.org", "paying@example.org")):
        truth.set(obj)
        stripe_api.on("GET", f"/v1/customers/{obj['customer']}",
                      Reply(200, {"id": obj["customer"], "object": "customer", "email": email}))
    result = runner.invoke(args=["stripe", "reconcile"])
    assert result.exit_code == 0, result.output
    assert f"customer cus_r linked by email to member {reader} (flagged)" in result.output
    assert _status(app, reader) == MembershipStatus.ACTIVE
    assert _status(app, paying) == MembershipStatus.PENDING
    with app.app_context():
        s = get_session()
        owners = dict(s.execute(select(StripeCustomer.stripe_id, StripeCustomer.account_id)).all())
        assert owners == {"cus_own": paying, "cus_r": reader, "cus_e": None, "cus_p": None}
        assert "by email match" in s.get(Account, reader).membership.flag_reason


def test_an_unverified_address_links_nothing_by_email(app, runner, stripe_api):
    """Anyone can join with anyone's address: a squatter who never proved it must not receive
    the real owner's Payment Link subscription (and their billing) by email match."""
    from ..support.stripe_standin import SubscriptionTruth

    squatter = make_account(app, email="victim@example.org")  # joined, never paid, never verified
    obj = subscription(id="sub_v", customer="cus_v", status="active")
    _serve_list(stripe_api, [obj])
    SubscriptionTruth(stripe_api).set(obj)
    stripe_api.on("GET", "/v1/customers/cus_v", Reply(200, {"id": "cus_v", "object": "customer",
                                                           "email": "victim@example.org"}))
    result = runner.invoke(args=["stripe", "reconcile"])
    assert result.exit_code == 0 and "linked by email" not in result.output
    assert _status(app, squatter) == MembershipStatus.PENDING


def test_reconcile_without_a_stripe_key_says_so(make_app):
    app = make_app(STRIPE_SECRET_KEY="")
    result = app.test_cli_runner().invoke(args=["stripe", "reconcile"])
    assert result.exit_code == 1 and "STRIPE_SECRET_KEY is not set" in result.output
