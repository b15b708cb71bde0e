"""Accept fast, apply durably: the webhook stores, the worker applies (SPEC "Stripe rules")."""
from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time
from datetime import timedelta
from pathlib import Path

import pytest
from sqlalchemy import event as sa_event
from sqlalchemy import func, select, update

from service.db import get_session, utcnow
from service.domain.membership import MembershipStatus
from service.models import Account, NewsletterOutbox, StripeEvent

from ..support.events import apply_events, event, post_event
from ..support.factories import make_account
from ..support.staff import client_as
from ..support.stripe_objects import subscription
from ..support.stripe_standin import Reply, SubscriptionTruth
from ..support.wait import poll

ROOT = Path(__file__).resolve().parents[2]
NOW = int(time.time())


def _statements_while_applying(app, evt) -> list[str]:
    """What applying one event sends to the database (the claim is not part of it)."""
    from service.billing import queue
    from service.billing.runtime import get_gateway
    from service.db import close_session

    post_event(app.test_client(), evt, apply=False)
    seen: list[str] = []
    with app.app_context():
        session = get_session()
        (claimed,) = queue.claim(session, 10, 60)
        engine = app.extensions["db_engine"]

        def count(conn, cursor, statement, *args):
            seen.append(statement[:70])

        sa_event.listen(engine, "before_cursor_execute", count)
        try:
            assert queue.apply_event(session, get_gateway(), claimed, queue.QueueReport()) is not None
        finally:
            sa_event.remove(engine, "before_cursor_execute", count)
            close_session()
    return seen


def test_applying_one_event_costs_at_most_eleven_statements_in_one_transaction(make_app, stripe_api):
    # Mail is delivered by the worker's mail pass, not inside the event's transaction.
    app = make_app(CATALOGUE_CACHE_SECONDS=60, MAIL_DELIVER_INLINE=False)
    make_account(app, customer="cus_S")
    with app.app_context():  # a running worker has read the catalogue already
        from service.membership import catalogue

        catalogue.current(get_session())
    truth = SubscriptionTruth(stripe_api)
    first = subscription(id="sub_S", customer="cus_S", status="active")
    truth.set(first)
    invoice = {"id": "in_S", "object": "invoice", "customer": "cus_S",
               "parent": {"type": "subscription_details", "subscription_details": {"subscription": "sub_S"}}}
    budgets = {
        # The new subscription's row is made holding the snapshot: room for the welcome mail and
        # the membership history row of the change.
        "first subscription event (enrols in DAWNS, welcome mail, history)": (
            event("customer.subscription.created", first, created=NOW - 9), 11),
        "a later update": (event("customer.subscription.updated",
                                 subscription(id="sub_S", customer="cus_S", status="past_due"), created=NOW - 5), 11),
        "invoice.paid (reads the subscription)": (event("invoice.paid", invoice, created=NOW), 10),
    }
    for name, (evt, budget) in budgets.items():
        statements = _statements_while_applying(app, evt)
        assert len(statements) <= budget, (name, "\n".join(statements))
    with app.app_context():
        assert get_session().scalar(select(func.count(StripeEvent.id)).where(StripeEvent.status == "done")) == 3


def test_the_webhook_only_stores_and_the_worker_applies(app, client):
    member = make_account(app, customer="cus_Q")
    evt = event("customer.subscription.created", subscription(id="sub_Q", customer="cus_Q", status="active"))
    resp = post_event(client, evt, apply=False)
    assert resp.status_code == 200 and resp.json == {"received": True, "duplicate": False}
    with app.app_context():
        row = get_session().scalars(select(StripeEvent)).one()
        assert (row.status, row.outcome) == ("pending", "received")
        assert get_session().get(Account, member).membership.status == MembershipStatus.PENDING
    assert apply_events(app).applied == 1
    with app.app_context():
        assert get_session().get(Account, member).membership.status == MembershipStatus.ACTIVE


def test_worker_once_applies_everything_due_and_exits(app, runner):
    make_account(app, customer="cus_O")
    client = app.test_client()
    for i, status in enumerate(("active", "past_due", "active")):
        post_event(client, event("customer.subscription.updated",
                                 subscription(id="sub_O", customer="cus_O", status=status), created=NOW + i), apply=False)
    result = runner.invoke(args=["worker", "--once"])
    assert result.exit_code == 0, result.output
    assert "stripe events: applied" in result.output and result.output.strip().endswith("nothing more is due")
    with app.app_context():
        assert get_session().scalar(select(func.count(StripeEvent.id)).where(StripeEvent.status == "done")) == 3


def test_readyz_reports_each_queue_and_staff_see_when_the_worker_is_behind(app, client):
    make_account(app, customer="cus_R")
    post_event(client, event("customer.subscription.created",
                             subscription(id="sub_R", customer="cus_R", status="active")), apply=False)
    body = client.get("/readyz").json
    assert set(body["queues"]) == {"stripe_events", "newsletter", "mail", "exports"}
    assert body["queues"]["stripe_events"]["depth"] == 1
    assert body["queues"]["stripe_events"]["oldest_age_seconds"] >= 0
    staff = client_as(app, "staff")
    assert "are not being updated" not in staff.get("/staff").get_data(as_text=True)
    with app.app_context():  # six minutes later, nobody has applied it
        from datetime import timedelta

        get_session().execute(update(StripeEvent).values(received_at=utcnow() - timedelta(minutes=6)))
        get_session().commit()
    page = staff.get("/staff").get_data(as_text=True)
    assert "Memberships are not being updated" in page and "waited 6 minutes" in page
    apply_events(app)
    assert client.get("/readyz").json["queues"]["stripe_events"] == {"depth": 0, "oldest_age_seconds": None}


def test_staff_see_when_exports_or_mail_wait_on_a_stopped_worker(make_app):
    """Not only Stripe events: with the worker down, an export and a reader's mail wait too."""
    from datetime import timedelta

    from service.models import MailOutbox

    app = make_app(MAIL_DELIVER_INLINE=False)  # only the (stopped) worker would send it
    staff = client_as(app, "staff")
    with app.app_context():
        s = get_session()
        s.add(MailOutbox(to_address="r@example.org", subject="x", text_body="x", html_body="x", kind="notice",
                         status="pending", attempts=0, next_attempt_at=utcnow() - timedelta(minutes=9),
                         created_at=utcnow() - timedelta(minutes=9)))
        s.commit()
    page = staff.get("/staff").get_data(as_text=True)
    assert "exports or mail are not being updated" in page and "emails to readers have waited 9 minutes" in page


def _postgres_only(database_url):
    if not database_url.startswith("postgresql"):
        pytest.skip("workers racing on claimed rows: PostgreSQL (SKIP LOCKED)")


def test_two_workers_racing_on_one_customers_events_never_apply_out_of_order_or_twice(app, database_url):
    """Eight workers, one customer with a long run of events arriving out of order."""
    _postgres_only(database_url)
    from service.billing import queue
    from service.billing.runtime import get_gateway
    from service.db import close_session

    member = make_account(app, customer="cus_T")
    client = app.test_client()
    statuses = ["active", "past_due", "active", "unpaid", "active", "past_due", "active", "canceled"]
    created = [NOW + i for i in range(len(statuses))]
    for i in (3, 0, 7, 1, 5, 2, 6, 4):  # delivered in a scrambled order
        kind = "deleted" if statuses[i] == "canceled" else "updated"
        post_event(client, event(f"customer.subscription.{kind}", subscription(
            id="sub_T", customer="cus_T", status=statuses[i]), created=created[i]), apply=False)
    applied_order: list[int] = []
    lock = threading.Lock()
    original = queue.apply_event

    def recording(session, gateway, claimed, report):
        with lock:
            applied_order.append(claimed.payload["created"])
        return original(session, gateway, claimed, report)

    barrier = threading.Barrier(8)

    def work():
        with app.app_context():
            barrier.wait()
            try:
                while queue.run_due(get_session(), get_gateway(), batch=5).touched:
                    pass
            finally:
                close_session()

    queue.apply_event = recording
    try:
        threads = [threading.Thread(target=work) for _ in range(8)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
    finally:
        queue.apply_event = original
    assert applied_order == sorted(applied_order) == created  # in Stripe's order, each once
    with app.app_context():
        assert get_session().get(Account, member).membership.status == MembershipStatus.CANCELED
        assert get_session().scalar(select(func.count(StripeEvent.id)).where(StripeEvent.status != "done")) == 0


def test_a_worker_killed_mid_batch_loses_nothing(app, database_url, tmp_path):
    """A real `flask worker` process, SIGKILLed while applying: its claims expire and a second
    worker applies every event, each once (one DAWNS enrolment per member, not two)."""
    _postgres_only(database_url)
    members = [make_account(app, email=f"k{i}@example.org", customer=f"cus_K{i}") for i in range(60)]
    client = app.test_client()
    for i in range(60):
        post_event(client, event("customer.subscription.created", subscription(
            id=f"sub_K{i}", customer=f"cus_K{i}", status="active"), created=NOW), apply=False)
    env = {**os.environ, "DATABASE_URL": database_url, "SECRET_KEY": "k", "STRIPE_SECRET_KEY": "sk_test_k",
           "STRIPE_PRICE_ID": "price_test_monthly", "STRIPE_PRODUCT_ID": "prod_test_membership",
           "STRIPE_EVENT_LEASE_SECONDS": "2", "NEWSLETTER_LEASE_SECONDS": "2", "WORKER_POLL_SECONDS": "0.2",
           "NEWSLETTER_LOG_PATH": str(tmp_path / "nl.jsonl")}
    flask = str(Path(sys.executable).parent / "flask")
    proc = subprocess.Popen([flask, "--app", "wsgi", "worker", "--batch", "25"], cwd=ROOT, env=env,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)

    def done() -> int:
        with app.app_context():
            n = get_session().scalar(select(func.count(StripeEvent.id)).where(StripeEvent.status == "done"))
            get_session().close()
        return n

    assert poll(lambda: done() >= 5, timeout=60)
    proc.send_signal(signal.SIGKILL)
    proc.wait(timeout=10)
    assert done() < 60, "the worker finished before it could be killed; use more events"
    again = subprocess.run([flask, "--app", "wsgi", "worker", "--once"], cwd=ROOT, env=env, timeout=120,
                           capture_output=True, text=True)
    assert again.returncode == 0, again.stderr[-2000:]
    if done() < 60:  # a claim of the killed worker still had its lease: wait it out, run again
        time.sleep(2.5)
        subprocess.run([flask, "--app", "wsgi", "worker", "--once"], cwd=ROOT, env=env, timeout=120, check=True,
                       capture_output=True)
    assert done() == 60
    with app.app_context():
        s = get_session()
        for member in members:
            assert s.get(Account, member).membership.status == MembershipStatus.ACTIVE
        enrolments = s.execute(select(NewsletterOutbox.account_id, func.count()).where(
            NewsletterOutbox.action == "subscribed").group_by(NewsletterOutbox.account_id)).all()
        assert sorted(enrolments) == [(m, 1) for m in sorted(members)]


def test_an_event_the_handler_cannot_take_is_retried_never_stops_the_worker_or_other_customers(app, runner):
    """A signed event in a shape we did not expect (here a subscription without `status`): the
    worker records the error and puts it off; other customers' events are applied; after the
    last attempt it is failed and shown to staff."""
    make_account(app, email="ok@example.org", customer="cus_OK")
    make_account(app, email="bad@example.org", customer="cus_BAD")
    client = app.test_client()
    odd = subscription(id="sub_BAD", customer="cus_BAD", status="active")
    del odd["status"]
    post_event(client, event("customer.subscription.updated", odd, id="evt_odd", created=NOW - 10), apply=False)
    post_event(client, event("customer.subscription.updated", subscription(id="sub_OK", customer="cus_OK"),
                             id="evt_fine", created=NOW), apply=False)
    result = runner.invoke(args=["worker", "--once"])
    assert result.exit_code == 0, result.output
    with app.app_context():
        rows = {r.stripe_id: r for r in get_session().scalars(select(StripeEvent))}
        assert rows["evt_fine"].status == "done" and rows["evt_fine"].outcome == "applied"
        assert (rows["evt_odd"].status, rows["evt_odd"].attempts) == ("pending", 1)
        assert rows["evt_odd"].last_error.startswith("error: KeyError")
        get_session().execute(update(StripeEvent).where(StripeEvent.stripe_id == "evt_odd").values(
            attempts=app.config["STRIPE_EVENT_MAX_ATTEMPTS"] - 1, next_attempt_at=utcnow()))
        get_session().commit()
    assert runner.invoke(args=["worker", "--once"]).exit_code == 0
    with app.app_context():
        assert get_session().scalar(select(StripeEvent.status).where(StripeEvent.stripe_id == "evt_odd")) == "failed"
    assert "evt_odd" in client_as(app, "staff").get("/staff/events").get_data(as_text=True)


def test_an_object_stripe_says_is_gone_fails_the_event_at_once_for_staff_to_see(app, stripe_api, runner):
    make_account(app, customer="cus_G")
    stripe_api.on("GET", "/v1/subscriptions/sub_gone", Reply(404, {"error": {
        "type": "invalid_request_error", "message": "No such subscription: 'sub_gone'"}}))  # no code: localstripe
    invoice = {"id": "in_G", "object": "invoice", "customer": "cus_G", "subscription": "sub_gone"}
    post_event(app.test_client(), event("invoice.paid", invoice, id="evt_gone"), apply=False)
    assert runner.invoke(args=["worker", "--once"]).exit_code == 0
    with app.app_context():
        row = get_session().scalars(select(StripeEvent).where(StripeEvent.stripe_id == "evt_gone")).one()
        assert (row.status, row.outcome, row.attempts) == ("failed", "failed", 1)
        assert "No such subscription" in row.note
    listed = runner.invoke(args=["stripe", "events"]).output
    assert "evt_gone" in listed
    assert "evt_gone" in client_as(app, "staff").get("/staff/events").get_data(as_text=True)


def test_a_worker_whose_claim_ran_out_records_nothing(app):
    """Another worker took the event over (its lease ran out here): this worker's late outcome,
    retry or failure is dropped, so the event is applied and recorded once."""
    from service.billing import queue
    from service.billing.runtime import get_gateway
    from service.db import close_session

    make_account(app, customer="cus_L")
    post_event(app.test_client(), event("customer.subscription.created",
                                        subscription(id="sub_L", customer="cus_L"), id="evt_L"), apply=False)
    with app.app_context():
        session = get_session()
        (mine,) = queue.claim(session, 10, 60)
        # ... the lease runs out, and another worker claims it afresh:
        session.execute(update(StripeEvent).values(claimed_until=utcnow() - timedelta(seconds=1)))
        session.commit()
        (theirs,) = queue.claim(session, 10, 60)
        assert theirs.lease_until != mine.lease_until
        report = queue.QueueReport()
        assert queue.apply_event(session, get_gateway(), mine, report) is None and report.applied == 0
        row = session.scalars(select(StripeEvent)).one()
        assert (row.status, row.outcome) == ("in_flight", "received")
        queue._retry(session, mine, "late", report)  # nor may it put the event off
        session.expire_all()
        assert session.scalars(select(StripeEvent.status)).one() == "in_flight"
        assert queue.apply_event(session, get_gateway(), theirs, report) == "applied" and report.applied == 1
        assert session.scalars(select(StripeEvent.status)).one() == "done"
        close_session()


def test_with_stripe_unreachable_the_worker_asks_for_the_catalogue_once_a_minute_not_every_pass(make_app, caplog):
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        closed = f"http://127.0.0.1:{s.getsockname()[1]}"
    app = make_app(STRIPE_API_BASE=closed, STRIPE_MAX_NETWORK_RETRIES=0)
    make_account(app, customer="cus_U")
    client = app.test_client()
    for i in range(3):
        post_event(client, event("customer.subscription.updated", subscription(id="sub_U", customer="cus_U"),
                                 created=NOW + i), apply=False)
        apply_events(app)  # a pass each: the event is applied with the catalogue as it stands
    warned = [r for r in caplog.records if "catalogue not refreshed" in r.getMessage()]
    assert len(warned) == 1 and "asking Stripe again in 60 s" in warned[0].getMessage()
    with app.app_context():
        assert get_session().scalar(select(func.count(StripeEvent.id)).where(StripeEvent.status == "done")) == 3


def test_with_stripe_unreachable_join_pages_do_not_each_wait_on_it(make_app, caplog):
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        closed = f"http://127.0.0.1:{s.getsockname()[1]}"
    app = make_app(STRIPE_API_BASE=closed, STRIPE_MAX_NETWORK_RETRIES=0)
    client = app.test_client()
    assert [client.get("/join").status_code for _ in range(3)] == [200, 200, 200]
    asked = [r for r in caplog.records if r.name == "service.billing" and "Stripe unavailable" in r.getMessage()]
    assert len(asked) == 1
