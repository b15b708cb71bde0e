"""`/staff/webhooks` (SPEC "Insight and operations"): stored Stripe events with filters (type,
outcome, member, date), each linked to its member; a failed or unlinked event can be replayed
through the same handler and ordering rules (audited): replayed after its cause is fixed it
applies once, and a stale one stays stale."""
from __future__ import annotations

import re
import time

from sqlalchemy import select, update

from service.db import get_session, utcnow
from service.domain.membership import MembershipStatus
from service.models import Account, AuditLog, StripeEvent

from ..support.events import apply_events, event, outcome_of, post_event
from ..support.factories import make_account
from ..support.staff import client_as
from ..support.stripe_objects import subscription
from ..support.stripe_standin import SubscriptionTruth, stripe_error
from ..support.web import csrf_from

NOW = int(time.time())


def status_of(app, member):
    with app.app_context():
        return get_session().get(Account, member).membership.status


def listed(staff, query=""):
    html = staff.get(f"/staff/webhooks{query}").get_data(as_text=True)
    return re.findall(r'events/(evt_\w+)"', html), html


def test_deliveries_are_listed_newest_first_and_filtered(app, client):
    amina = make_account(app, email="amina@example.org", customer="cus_A")
    created = event("customer.subscription.created", subscription(id="sub_A", customer="cus_A", status="active",
                                                                  member_id=amina), created=NOW - 30)
    post_event(client, created)
    stranger = event("customer.subscription.created", subscription(id="sub_X", customer="cus_X", status="active"),
                     created=NOW - 20)
    post_event(client, stranger)  # no member has cus_X: unlinked
    ignored = event("product.created", {"id": "prod_1", "object": "product"}, created=NOW - 10)
    post_event(client, ignored)
    staff = client_as(app, "staff")
    ids, html = listed(staff)
    assert ids[:3] == [ignored["id"], stranger["id"], created["id"]]
    assert f'href="/staff/members/{amina}"' in html
    assert listed(staff, "?type=customer.subscription.")[0][:2] == [stranger["id"], created["id"]]
    assert listed(staff, "?outcome=unlinked")[0][:1] == [stranger["id"]] and created["id"] not in listed(
        staff, "?outcome=unlinked")[0]
    assert listed(staff, f"?member={amina}")[0][:1] == [created["id"]]
    assert listed(staff, "?member=amina@example.org")[0][:1] == [created["id"]]
    assert listed(staff, "?member=nobody@example.org")[0] == []
    assert listed(staff, "?from=2001-01-01&to=2001-01-02")[0] == []
    bad = staff.get("/staff/webhooks?from=yesterday&outcome=weird").get_data(as_text=True)
    assert "is not a date" in bad and "Unknown outcome" in bad
    # Applied and ignored events are done; an unlinked one is offered once its customer is a member's.
    assert "/replay" not in html
    refused = staff.post(f"/staff/webhooks/{stranger['id']}/replay", data={"csrf_token": csrf_from(html), "confirm": "y"})
    assert "still linked to no member" in staff.get(refused.headers["Location"]).get_data(as_text=True)
    assert outcome_of(app, stranger["id"]) == "unlinked"
    make_account(app, email="xavier@example.org", customer="cus_X")
    assert f"/staff/webhooks/{stranger['id']}/replay" in listed(staff)[1]


def test_only_staff_see_deliveries_or_replay(app):
    assert client_as(app, "anonymous").get("/staff/webhooks").status_code == 302
    member = client_as(app, "member")
    assert member.get("/staff/webhooks").status_code == 403
    assert member.post("/staff/webhooks/evt_x/replay", data={"confirm": "y"}).status_code in (400, 403)


def _failing_update(make_app, stripe_api):
    """A past_due update whose subscription Stripe will not read, twice: failed for good."""
    app = make_app(STRIPE_EVENT_MAX_ATTEMPTS=2)
    member = make_account(app, customer="cus_F")
    client = app.test_client()
    truth = SubscriptionTruth(stripe_api)
    post_event(client, event("customer.subscription.created",
                             subscription(id="sub_F", customer="cus_F", status="active", member_id=member),
                             created=NOW - 300))
    stripe_api.on("GET", "/v1/subscriptions/sub_F", stripe_error(500, "api_error", "Stripe is down"))
    invoice = {"id": "in_F", "object": "invoice", "customer": "cus_F",
               "parent": {"type": "subscription_details", "subscription_details": {"subscription": "sub_F"}}}
    failing = event("invoice.payment_failed", invoice, created=NOW - 200)
    post_event(client, failing)
    for _ in range(2):
        with app.app_context():
            get_session().execute(update(StripeEvent).where(StripeEvent.status == "pending")
                                  .values(next_attempt_at=utcnow()))
            get_session().commit()
        apply_events(app)
    with app.app_context():
        assert get_session().scalar(select(StripeEvent.status).where(StripeEvent.stripe_id == failing["id"])) == "failed"
    return app, member, failing, truth


def _replay(staff, evt_id):
    page = staff.get("/staff/webhooks").get_data(as_text=True)
    return staff.post(f"/staff/webhooks/{evt_id}/replay", data={"csrf_token": csrf_from(page), "confirm": "y",
                                                                "back": "/staff/webhooks?outcome=failed"})


def test_a_failed_event_replayed_after_its_cause_is_fixed_applies_once(make_app, stripe_api):
    app, member, failing, truth = _failing_update(make_app, stripe_api)
    truth.set(subscription(id="sub_F", customer="cus_F", status="past_due", member_id=member))  # Stripe is back
    staff = client_as(app, "staff")
    resp = _replay(staff, failing["id"])
    assert resp.status_code == 303 and resp.headers["Location"] == "/staff/webhooks?outcome=failed"
    apply_events(app)
    assert outcome_of(app, failing["id"]) == "applied" and status_of(app, member) == MembershipStatus.PAST_DUE
    again = staff.post(resp.headers["Location"]).status_code  # nothing posted: no token, refused
    assert again in (400, 405)
    refused = _replay(staff, failing["id"])
    assert "Only a failed or unlinked Stripe event can be replayed" in staff.get(refused.headers["Location"]).get_data(
        as_text=True)
    with app.app_context():
        audits = get_session().scalars(select(AuditLog).where(AuditLog.action == "stripe_event_requeued")).all()
        assert [(a.target_account_id, a.details["event"]) for a in audits] == [(member, failing["id"])]


def test_a_stale_event_replayed_stays_stale(app, client):
    """An old event for a customer nobody was linked to then; the customer is linked and a newer
    event applied; replaying the old one changes nothing."""
    old = event("customer.subscription.updated", subscription(id="sub_U", customer="cus_U", status="past_due"),
                created=NOW - 300)
    post_event(client, old)
    assert outcome_of(app, old["id"]) == "unlinked"
    member = make_account(app, customer="cus_U")  # linked, as a completed checkout of ours does
    newer = event("customer.subscription.updated",
                  subscription(id="sub_U", customer="cus_U", status="active", member_id=member), created=NOW - 100)
    post_event(client, newer)
    assert status_of(app, member) == MembershipStatus.ACTIVE
    _replay(client_as(app, "staff"), old["id"])
    apply_events(app)
    assert outcome_of(app, old["id"]) == "stale"
    assert status_of(app, member) == MembershipStatus.ACTIVE  # never overwritten by the replay


def test_an_old_payment_failure_replayed_for_a_member_who_pays_again_sends_no_mail(app, client, stripe_api):
    from service.models import MailOutbox

    invoice = {"id": "in_old", "object": "invoice", "customer": "cus_P", "amount_due": 500, "currency": "usd",
               "parent": {"type": "subscription_details", "subscription_details": {"subscription": "sub_P"}}}
    old = event("invoice.payment_failed", invoice, created=NOW - 3000)
    post_event(client, old)  # nobody has cus_P yet: unlinked
    member = make_account(app, customer="cus_P")
    active = subscription(id="sub_P", customer="cus_P", status="active", member_id=member)
    SubscriptionTruth(stripe_api).set(active)
    post_event(client, event("customer.subscription.created", active, created=NOW - 100))
    _replay(client_as(app, "staff"), old["id"])
    apply_events(app)
    assert status_of(app, member) == MembershipStatus.ACTIVE
    with app.app_context():
        kinds = get_session().scalars(select(MailOutbox.kind)).all()
    assert "payment_failed" not in kinds
