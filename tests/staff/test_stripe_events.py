"""Failed Stripe events are shown to staff, who queue them again once the cause is fixed
(the console, audited, and `flask stripe events` / `flask stripe replay`)."""
from __future__ import annotations

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


def _failed_invoice(make_app, stripe_api):
    """An invoice event whose subscription Stripe refused to read, twice: failed for good."""
    app = make_app(STRIPE_EVENT_MAX_ATTEMPTS=2)
    member = make_account(app, customer="cus_F")
    stripe_api.on("GET", "/v1/subscriptions/sub_F", stripe_error(401, "invalid_request_error", "Invalid API Key provided"))
    invoice = {"id": "in_F", "object": "invoice", "customer": "cus_F",
               "parent": {"type": "subscription_details", "subscription_details": {"subscription": "sub_F"}}}
    evt = event("invoice.paid", invoice)
    assert post_event(app.test_client(), evt).status_code == 200
    for _ in range(2):
        with app.app_context():
            get_session().execute(update(StripeEvent).values(next_attempt_at=utcnow()))
            get_session().commit()
        apply_events(app)
    with app.app_context():
        assert get_session().scalar(select(StripeEvent.status)) == "failed"
    return app, member, evt


def test_staff_see_failed_events_and_queue_one_again_once_the_cause_is_fixed(make_app, stripe_api):
    app, member, evt = _failed_invoice(make_app, stripe_api)
    staff = client_as(app, "staff")
    home = staff.get("/staff").get_data(as_text=True)
    assert "1 Stripe event could not be applied" in home  # a banner on every staff page
    page = staff.get("/staff/events").get_data(as_text=True)
    assert evt["id"] in page and "invoice.paid" in page and "Invalid API Key" in page
    assert f"/staff/members/{member}" in page

    # Without the confirmation box: nothing happens.
    resp = staff.post(f"/staff/events/{evt['id']}/requeue", data={"csrf_token": csrf_from(page)})
    assert resp.status_code == 303
    with app.app_context():
        assert get_session().scalar(select(StripeEvent.status)) == "failed"

    # The key is fixed: staff queue it again, and the worker applies it.
    SubscriptionTruth(stripe_api).set(subscription(id="sub_F", customer="cus_F", status="active"))
    resp = staff.post(f"/staff/events/{evt['id']}/requeue", data={"csrf_token": csrf_from(page), "confirm": "y"})
    assert resp.status_code == 303
    assert "queued again" in staff.get(resp.headers["Location"]).get_data(as_text=True)
    apply_events(app)
    assert outcome_of(app, evt["id"]) == "applied"
    with app.app_context():
        session = get_session()
        assert session.get(Account, member).membership.status == MembershipStatus.ACTIVE
        audit = session.scalars(select(AuditLog).where(AuditLog.action == "stripe_event_requeued")).one()
        assert (audit.actor_email, audit.target_account_id, audit.details["event"]) == (
            "staff-user@example.org", member, evt["id"])
    assert "could not be applied" not in staff.get("/staff").get_data(as_text=True)
    # Only a failed event can be queued again (an applied one, or one that does not exist: no).
    again = staff.post(f"/staff/events/{evt['id']}/requeue", data={"csrf_token": csrf_from(page), "confirm": "y"},
                       follow_redirects=True).get_data(as_text=True)
    assert "Only a failed or unlinked Stripe event" in again
    assert staff.post("/staff/events/evt_nope/requeue", data={"csrf_token": csrf_from(page), "confirm": "y"},
                      follow_redirects=True).status_code == 200


def test_members_and_strangers_never_see_or_requeue_events(make_app, stripe_api):
    app, _, evt = _failed_invoice(make_app, stripe_api)
    member = client_as(app, "member")
    assert member.get("/staff/events").status_code == 403
    assert client_as(app, "anonymous").get("/staff/events").status_code == 302
    token = csrf_from(member.get("/account").get_data(as_text=True))
    assert member.post(f"/staff/events/{evt['id']}/requeue", data={"csrf_token": token, "confirm": "y"}).status_code == 403
    with app.app_context():
        assert get_session().scalar(select(StripeEvent.status)) == "failed"


def test_the_cli_lists_failed_events_and_replays_one(make_app, stripe_api):
    app, member, evt = _failed_invoice(make_app, stripe_api)
    runner = app.test_cli_runner()
    listed = runner.invoke(args=["stripe", "events"])
    assert listed.exit_code == 0 and evt["id"] in listed.output and "failed" in listed.output
    assert "1 event(s)" in listed.output
    missing = runner.invoke(args=["stripe", "replay", "evt_nope"])
    assert missing.exit_code != 0 and "not a failed Stripe event" in missing.output
    SubscriptionTruth(stripe_api).set(subscription(id="sub_F", customer="cus_F", status="active"))
    replayed = runner.invoke(args=["stripe", "replay", evt["id"]])
    assert replayed.exit_code == 0 and "queued again" in replayed.output
    apply_events(app)
    assert outcome_of(app, evt["id"]) == "applied"
    with app.app_context():
        assert get_session().get(Account, member).membership.status == MembershipStatus.ACTIVE
        assert get_session().scalars(select(AuditLog.actor_email).where(
            AuditLog.action == "stripe_event_requeued")).one() == "cli"
