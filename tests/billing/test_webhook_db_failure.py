"""The database fails: the webhook answers 503 and stores nothing, Stripe's retry is stored and
applied; while applying, a database failure leaves nothing half-applied and is retried."""
from __future__ import annotations


from sqlalchemy import create_engine, func, select, text

from service.db import get_session
from service.domain.membership import MembershipStatus
from service.models import Account, StripeEvent, StripeSubscription

from ..support.events import event, post_event
from ..support.factories import make_account
from ..support.stripe_objects import subscription


def _counts(app):
    with app.app_context():
        s = get_session()
        return (s.scalar(select(func.count(StripeEvent.id))), s.scalar(select(func.count(StripeSubscription.id))))


class HeldLock:
    """Another connection holding a lock the webhook needs, until released."""

    def __init__(self, url: str, table: str = "stripe_events") -> None:
        self.engine = create_engine(url)
        self.conn = self.engine.connect()
        if self.engine.dialect.name == "postgresql":
            self.conn.execute(text(f"LOCK TABLE {table} IN ACCESS EXCLUSIVE MODE"))
        else:
            self.conn.exec_driver_sql("BEGIN IMMEDIATE")

    def release(self) -> None:
        self.conn.rollback()
        self.conn.close()
        self.engine.dispose()


def test_database_down_for_the_webhook_answers_503_and_stores_nothing_then_the_retry_applies(make_app,
                                                                                             database_url):
    if database_url.startswith("postgresql"):
        sep = "&" if "?" in database_url else "?"
        app = make_app(DATABASE_URL=f"{database_url}{sep}options=-c%20lock_timeout%3D300")
    else:
        app = make_app(SQLITE_BUSY_TIMEOUT=0.3)
    member = make_account(app, customer="cus_DB")
    client = app.test_client()
    evt = event("customer.subscription.created",
                subscription(id="sub_DB", customer="cus_DB", status="active", member_id=member))

    lock = HeldLock(database_url)
    try:
        resp = post_event(client, evt)
    finally:
        lock.release()
    assert resp.status_code == 503
    assert resp.json["error"]["code"] == "unavailable"
    assert _counts(app) == (0, 0)
    with app.app_context():
        assert get_session().get(Account, member).membership.status == MembershipStatus.PENDING

    # Stripe retries the same event: it applies, once.
    retry = post_event(client, evt)
    assert retry.status_code == 200 and retry.json["duplicate"] is False
    assert _counts(app) == (1, 1)
    with app.app_context():
        assert get_session().get(Account, member).membership.status == MembershipStatus.ACTIVE


def test_database_failure_while_applying_leaves_nothing_half_applied_and_is_retried(make_app, database_url):
    from ..support.events import apply_events

    if not database_url.startswith("postgresql"):
        import pytest

        pytest.skip("a lock on one table while the queue stays readable: PostgreSQL (SQLite locks the whole file)")
    sep = "&" if "?" in database_url else "?"
    app = make_app(DATABASE_URL=f"{database_url}{sep}options=-c%20lock_timeout%3D300", STRIPE_EVENT_BACKOFF_BASE=0.0)
    member = make_account(app, customer="cus_DB2")
    evt = event("customer.subscription.created",
                subscription(id="sub_DB2", customer="cus_DB2", status="active"))
    assert post_event(app.test_client(), evt, apply=False).status_code == 200
    lock = HeldLock(database_url, table="memberships")
    try:
        report = apply_events(app)
    finally:
        lock.release()
    assert report.retried == 1 and report.applied == 0
    with app.app_context():
        row = get_session().scalars(select(StripeEvent)).one()
        assert (row.status, row.attempts) == ("pending", 1) and "database" in row.last_error
        assert get_session().scalar(select(func.count(StripeSubscription.id))) == 0  # nothing half-applied
    assert apply_events(app).applied == 1
    with app.app_context():
        assert get_session().get(Account, member).membership.status == MembershipStatus.ACTIVE
