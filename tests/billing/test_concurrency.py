"""Races on PostgreSQL: copies of one delivery on several web threads of a real WSGI server,
and two workers applying the queue at the same moment."""
from __future__ import annotations

import json
import threading

import pytest
import requests
from sqlalchemy import func, select

from service.db import get_session
from service.domain.membership import MembershipStatus
from service.models import Account, AuditLog, StripeCustomer, StripeEvent, StripeSubscription

from ..support.events import event, sign
from ..support.factories import PASSWORD, make_account, our_checkout
from ..support.web import csrf_from
from ..support.server import LiveServer
from ..support.stripe_objects import subscription
from ..support.stripe_standin import SubscriptionTruth


@pytest.fixture
def live(app, database_url):
    if not database_url.startswith("postgresql"):
        pytest.skip("concurrency tests run on PostgreSQL (SQLite serialises every writer)")
    server = LiveServer(app)
    yield server
    server.stop()


def _workers_together(app, n: int = 2) -> None:
    """`n` workers, each on its own connection, start their pass at the same moment."""
    from service.billing import queue
    from service.billing.runtime import get_gateway
    from service.db import close_session

    barrier = threading.Barrier(n)
    errors: list[BaseException] = []

    def work() -> None:
        with app.app_context():
            try:
                barrier.wait()
                queue.run_due(get_session(), get_gateway(), batch=1)
            except BaseException as exc:  # noqa: BLE001 - reported below
                errors.append(exc)
            finally:
                close_session()

    threads = [threading.Thread(target=work) for _ in range(n)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors, errors


def _post_together(url: str, payloads: list[str]) -> list[requests.Response]:
    barrier = threading.Barrier(len(payloads))
    results: list[requests.Response | None] = [None] * len(payloads)

    def worker(i: int, payload: str) -> None:
        barrier.wait()
        results[i] = requests.post(f"{url}/stripe/webhook", data=payload, timeout=30,
                                   headers={"Content-Type": "application/json", "Stripe-Signature": sign(payload)})

    threads = [threading.Thread(target=worker, args=(i, p)) for i, p in enumerate(payloads)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return results  # type: ignore[return-value]


def test_same_event_posted_concurrently_is_applied_once(app, live):
    member = make_account(app, customer="cus_C")
    client = app.test_client()
    from ..support.events import post_event

    post_event(client, event("customer.subscription.created",
                             subscription(id="sub_C", customer="cus_C", status="active", member_id=member)))
    payload = json.dumps(event("customer.updated", {"id": "cus_C", "object": "customer", "email": "moved@example.org"}))
    responses = _post_together(live.url, [payload] * 8)
    assert [r.status_code for r in responses] == [200] * 8
    assert sorted(r.json()["duplicate"] for r in responses) == [False] + [True] * 7
    _workers_together(app)
    with app.app_context():
        s = get_session()
        assert s.scalar(select(func.count(StripeEvent.id)).where(StripeEvent.type == "customer.updated")) == 1
        assert s.scalar(select(func.count(AuditLog.id)).where(AuditLog.action == "email_change_requested")) == 1
        assert s.scalar(select(StripeCustomer.email).where(StripeCustomer.stripe_id == "cus_C")) == "moved@example.org"
        assert s.get(Account, member).email == "reader@example.org"  # the login moves only by the link


def test_checkout_completed_and_subscription_created_racing_make_one_customer_and_one_subscription(
    app, live, stripe_api
):
    truth = SubscriptionTruth(stripe_api)
    for round_ in range(8):
        member = make_account(app, email=f"race{round_}@example.org")
        sub_id, cus_id = f"sub_R{round_}", f"cus_R{round_}"
        sub = subscription(id=sub_id, customer=cus_id, status="active", member_id=member)
        truth.set(sub)
        cs = our_checkout(app, member, email=f"race{round_}@example.org", customer=cus_id, subscription=sub_id)
        payloads = [json.dumps(event("checkout.session.completed", cs)),
                    json.dumps(event("customer.subscription.created", sub))]
        responses = _post_together(live.url, payloads)
        assert [r.status_code for r in responses] == [200, 200], [r.text for r in responses]
        _workers_together(app)
        _workers_together(app)  # the one that waited for its customer's older event
        with app.app_context():
            s = get_session()
            assert s.scalar(select(func.count(StripeCustomer.id)).where(StripeCustomer.stripe_id == cus_id)) == 1
            assert s.scalar(select(func.count(StripeSubscription.id))
                            .where(StripeSubscription.stripe_id == sub_id)) == 1
            customer = s.scalars(select(StripeCustomer).where(StripeCustomer.stripe_id == cus_id)).one()
            assert customer.account_id == member
            assert s.get(Account, member).membership.status == MembershipStatus.ACTIVE


def test_success_page_and_webhook_racing_fulfil_once(app, live, stripe_api):
    from ..support.stripe_standin import Reply

    truth = SubscriptionTruth(stripe_api)
    member = make_account(app)
    sub = subscription(id="sub_S", customer="cus_S", status="active", member_id=member)
    truth.set(sub)
    cs = our_checkout(app, member, id="cs_S", customer="cus_S", subscription="sub_S")
    reader = requests.Session()  # the reader who paid, signed in as after POST /join
    form = reader.get(f"{live.url}/login", timeout=30).text
    reader.post(f"{live.url}/login", timeout=30, data={"email": "reader@example.org", "password": PASSWORD,
                                                       "csrf_token": csrf_from(form)})
    stripe_api.on("GET", "/v1/checkout/sessions/cs_S", Reply(200, cs))
    payload = json.dumps(event("checkout.session.completed", cs))
    barrier = threading.Barrier(2)
    out: dict[str, int] = {}

    def page() -> None:
        barrier.wait()
        resp = reader.get(f"{live.url}/join/success?session_id=cs_S", timeout=30)
        out["page"] = resp.status_code
        out["neutral"] = "log in with the account you joined with" in resp.text

    def hook() -> None:
        barrier.wait()
        out["hook"] = requests.post(f"{live.url}/stripe/webhook", data=payload, timeout=30,
                                    headers={"Content-Type": "application/json",
                                             "Stripe-Signature": sign(payload)}).status_code

    threads = [threading.Thread(target=page), threading.Thread(target=hook)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert out == {"page": 200, "hook": 200, "neutral": False}
    _workers_together(app)
    with app.app_context():
        s = get_session()
        assert s.scalar(select(func.count(StripeCustomer.id))) == 1
        assert s.scalar(select(func.count(StripeSubscription.id))) == 1
        assert s.get(Account, member).membership.status == MembershipStatus.ACTIVE
