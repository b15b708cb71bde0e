"""The database fails while an event is being applied: 5xx, nothing half-applied, and the
retried delivery applies."""
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

    def __init__(self, url: str) -> None:
        self.engine = create_engine(url)
        self.conn = self.engine.connect()
        if self.engine.dialect.name == "postgresql":
            self.conn.execute(text("LOCK TABLE memberships IN ACCESS EXCLUSIVE MODE"))
        else:
            self.conn.exec_driver_sql("BEGIN IMMEDIATE")

    def release(self) -> None:
        self.conn.rollback()
        self.conn.close()
        self.engine.dispose()


def test_database_failure_mid_event_answers_503_and_stores_nothing_then_retry_applies(make_app, database_url):
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
