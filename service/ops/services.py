from __future__ import annotations

import logging

from sqlalchemy import text
from sqlalchemy.exc import SQLAlchemyError

from ..db import get_engine
from ..migrate import current_revision, head_revision

log = logging.getLogger("service.ops")


def readiness() -> tuple[bool, dict[str, str]]:
    checks: dict[str, str] = {}
    try:
        with get_engine().connect() as conn:
            conn.execute(text("SELECT 1"))
            current = current_revision(conn)
    except SQLAlchemyError as exc:
        log.error("readiness: database unreachable: %s", exc.__class__.__name__)
        return False, {"database": "unreachable"}
    checks["database"] = "ok"
    head = head_revision()
    checks["migrations"] = "ok" if current == head else f"at {current or 'none'}, head is {head}"
    return current == head, checks
