"""The webhook's one job: store a verified event once, fast, and wake the worker.

Stripe asks for a quick 2xx before any complex logic
(https://docs.stripe.com/webhooks#acknowledge-events-immediately): one INSERT that ignores a
duplicate id (two copies at the same moment on two workers: the second waits for the first to
commit, then inserts nothing), a NOTIFY on PostgreSQL, one commit. Applying is the worker's job
(`queue.py`)."""
from __future__ import annotations

from datetime import datetime, timezone
from typing import Any

from sqlalchemy import text
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.engine import Engine

from ..logs import current_request_id
from ..membership.service import WAKE_CHANNEL
from ..models import StripeEvent
from .webhooks import EventOutcome, customer_of

_table = StripeEvent.__table__


def _insert(dialect: str):
    insert = pg_insert if dialect == "postgresql" else sqlite_insert
    return insert(_table).on_conflict_do_nothing(index_elements=["stripe_id"]).returning(_table.c.id)


def store(engine: Engine, event: dict[str, Any]) -> bool:
    """Store the event for the worker. True if it is new, False for a duplicate delivery."""
    obj = event["data"]["object"]
    created = datetime.fromtimestamp(int(event["created"]), tz=timezone.utc)
    now = datetime.now(timezone.utc)
    values = {
        "stripe_id": event["id"], "type": event["type"], "api_version": event.get("api_version"),
        "stripe_created_at": created, "livemode": bool(event.get("livemode")), "object_id": obj.get("id"),
        "customer_stripe_id": customer_of(event["type"], obj), "payload": event,
        "outcome": EventOutcome.RECEIVED.value, "received_at": now, "status": "pending", "attempts": 0,
        "next_attempt_at": now, "request_id": current_request_id(),
    }
    with engine.begin() as conn:
        new = conn.execute(_insert(engine.dialect.name), values).first() is not None
        if new and engine.dialect.name == "postgresql":
            conn.execute(text("SELECT pg_notify(:channel, 'stripe_events')"), {"channel": WAKE_CHANNEL})
    return new
