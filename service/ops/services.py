from __future__ import annotations

import logging
from typing import Any

from sqlalchemy import text
from sqlalchemy.exc import SQLAlchemyError

from ..billing import queue as stripe_queue
from ..db import get_engine, get_session
from .. import mail
from ..membership import exports
from ..migrate import current_revision, head_revision
from ..newsletter import outbox

log = logging.getLogger("service.ops")

def queues() -> dict[str, dict[str, Any]]:
    """Each queue's depth (rows due) and the age in seconds of its oldest due row."""
    session = get_session()
    out = {}
    for name, measure in (("stripe_events", stripe_queue.depth), ("newsletter", outbox.depth),
                          ("mail", mail.depth), ("exports", exports.depth)):
        depth, oldest = measure(session)
        out[name] = {"depth": depth, "oldest_age_seconds": round(oldest, 1) if oldest is not None else None}
    session.rollback()
    return out


def readiness() -> tuple[bool, dict[str, str], dict[str, Any]]:
    checks: dict[str, str] = {}
    try:
        with get_engine().connect() as conn:
            conn.execute(text("SELECT 1"))
            current = current_revision(conn)
    except SQLAlchemyError as exc:
        log.error("readiness: database unreachable: %s", exc.__class__.__name__)
        return False, {"database": "unreachable"}, {}
    checks["database"] = "ok"
    head = head_revision()
    checks["migrations"] = "ok" if current == head else f"at {current or 'none'}, head is {head}"
    if current != head:
        return False, checks, {}
    return True, checks, queues()
