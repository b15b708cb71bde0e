"""Found by the attack review of issue 10: an event that kills its worker ends `failed` and
visible; a signed event "made" after its signature, or naming another customer, changes
nothing; an export is its requester's (and admins')."""
from __future__ import annotations

import json
import time
from datetime import timedelta

from sqlalchemy import select, update

from service.db import get_session, utcnow
from service.domain.membership import MembershipStatus
from service.models import Account, ExportJob, StripeEvent, StripeSubscription

from ..support.events import apply_events, event, post_event, sign
from ..support.factories import make_account
from ..support.staff import client_as
from ..support.stripe_objects import subscription


def _row(app, evt_id):
    with app.app_context():
        s = get_session()
        r = s.scalars(select(StripeEvent).where(StripeEvent.stripe_id == evt_id)).one()
        s.expunge(r)
        return r


def test_an_event_that_kills_every_worker_ends_failed_visible_and_stops_blocking_its_customer(make_app, stripe_api):
    from service.billing import queue

    now = int(time.time())
    app = make_app(STRIPE_EVENT_MAX_ATTEMPTS=3)
    member = make_account(app, customer="cus_K")
    killer = event("customer.subscription.created", subscription(id="sub_K", customer="cus_K", status="active"),
                   id="evt_killer", created=now - 30)
    later = event("customer.subscription.updated", subscription(id="sub_K", customer="cus_K", status="canceled"),
                  id="evt_after_killer", created=now - 10)
    client = app.test_client()
    for e in (killer, later):
        assert post_event(client, e, apply=False).status_code == 200
    for n in range(3):  # three workers in a row take it and die; their leases run out
        with app.app_context():
            s = get_session()
            claimed = queue.claim(s, 10, 60)
            if n < 2:
                assert [c.id for c in claimed] == [_row(app, "evt_killer").id]
            s.execute(update(StripeEvent).where(StripeEvent.stripe_id == "evt_killer", StripeEvent.status == "in_flight")
                      .values(claimed_until=utcnow() - timedelta(seconds=1)))
            s.commit()
    staff = client_as(app, "staff")
    assert "evt_killer" in staff.get("/staff/events").get_data(as_text=True)  # seen while stuck
    apply_events(app)  # this pass finds it abandoned a third time: failed
    apply_events(app)  # the next pass applies what waited behind it
    r = _row(app, "evt_killer")
    assert r.status == "failed" and r.attempts == 3 and "stopped" in (r.last_error or "")
    assert _row(app, "evt_after_killer").status == "done"  # the customer's later events go on
    with app.app_context():
        assert get_session().get(Account, member).membership.status == MembershipStatus.CANCELED
    assert "evt_killer" in staff.get("/staff/events").get_data(as_text=True)


def test_an_event_made_after_its_own_signature_is_refused(app, client):
    make_account(app, customer="cus_F")
    now = int(time.time())
    future = event("customer.subscription.updated", subscription(id="sub_F", customer="cus_F"), created=now + 1800)
    payload = json.dumps(future)
    resp = client.post("/stripe/webhook", data=payload, content_type="application/json",
                       headers={"Stripe-Signature": sign(payload, timestamp=now)})
    assert resp.status_code == 400
    with app.app_context():
        assert get_session().scalar(select(StripeEvent.id)) is None


def test_an_event_naming_another_customer_for_a_subscription_changes_nothing(app, client):
    now = int(time.time())
    owner = make_account(app, email="a@example.org", customer="cus_A")
    make_account(app, email="b@example.org", customer="cus_B")
    post_event(client, event("customer.subscription.created", subscription(id="sub_A", customer="cus_A"),
                             created=now - 20))
    post_event(client, event("customer.subscription.updated",
                             subscription(id="sub_A", customer="cus_B", status="canceled"), created=now - 5,
                             id="evt_moved"))
    with app.app_context():
        s = get_session()
        row = s.scalars(select(StripeSubscription).where(StripeSubscription.stripe_id == "sub_A")).one()
        assert (row.customer_stripe_id, row.status) == ("cus_A", "active")
        assert s.get(Account, owner).membership.status == MembershipStatus.ACTIVE
    assert _row(app, "evt_moved").outcome == "foreign"


def test_an_export_is_its_requesters_and_admins_only(app):
    from service.db import utcnow as now_

    from ..support.factories import make_account as make
    from service.domain.membership import Role

    a = make(app, email="staff-a@example.org", role=Role.STAFF, status=None)
    with app.app_context():
        s = get_session()
        job = ExportJob(requested_by=a, filters={}, status="done", rows_done=0, file_name="members-x.csv",
                        created_at=now_(), expires_at=now_() + timedelta(hours=1))
        s.add(job)
        s.commit()
        job_id = job.id
    other = client_as(app, "staff")
    assert other.get(f"/staff/exports/{job_id}").status_code == 404
    assert other.get(f"/staff/exports/{job_id}/download").status_code == 404
    assert client_as(app, "admin").get(f"/staff/exports/{job_id}").status_code == 200
