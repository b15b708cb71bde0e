"""The membership history (SPEC "Insight and operations"): an append-only row for every change
of a member's state, level, monthly value, organisation or DAWNS enrolment, written by
`service.recompute` in the transaction of the change.

Who caused it is the session's current `source`: `stripe event` (the worker applying an event,
the success page, reconcile), `staff`, `seat`, `import`, or `system` (a grace period or a comp
running out). Callers name it with `with source(session, "staff"):`.
"""
from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from datetime import datetime
from typing import Any

from sqlalchemy.orm import Session

from ..domain.membership import MembershipStatus
from ..domain.newsletter import Desired
from ..models import Membership, MembershipHistory

STRIPE_EVENT, STAFF, SEAT, IMPORT, SYSTEM = "stripe event", "staff", "seat", "import", "system"
SOURCES = (STRIPE_EVENT, STAFF, SEAT, IMPORT, SYSTEM)
_KEY = "history_source"

# One compiled statement for every row (a Core INSERT on the table, not the ORM's bulk path):
# this runs on the worker's hot path, once per change.
_INSERT = MembershipHistory.__table__.insert()

# The membership columns whose change is history (others, such as paid_through, move every renewal).
WATCHED = ("status", "level_name", "monthly_value", "organisation_id", "newsletter_desired")


@contextmanager
def source(session: Session, name: str, stripe_event_id: str | None = None, *,
           outer_wins: bool = False) -> Iterator[None]:
    """Changes recomputed inside the block are recorded as caused by `name` (`outer_wins`: unless
    an enclosing block named a cause already: a seat a Stripe event suspends is the event's)."""
    if name not in SOURCES:
        raise ValueError(f"unknown history source {name!r}")
    before = session.info.get(_KEY)
    if not (outer_wins and before is not None):
        session.info[_KEY] = (name, stripe_event_id)
    try:
        yield
    finally:
        if before is None:
            session.info.pop(_KEY, None)
        else:
            session.info[_KEY] = before


def record(session: Session, membership: Membership, before: MembershipStatus | None, changed: dict[str, Any],
           *, entitled: bool, now: datetime, first: bool = False) -> None:
    """One history row for a change of the watched columns (`changed`: the new values; the
    membership already holds them). A Core INSERT: this runs on the worker's hot path."""
    if not first and not any(key in changed for key in WATCHED):
        return
    name, event_id = session.info.get(_KEY) or (SYSTEM, None)
    session.connection().execute(_INSERT, dict(
        account_id=membership.account_id, at=now,
        from_status=None if first or before is None else MembershipStatus(before).value,
        to_status=MembershipStatus(membership.status).value, entitled=entitled,
        level_name=membership.level_name, monthly_value=membership.monthly_value or 0,
        currency=membership.level_currency, organisation_id=membership.organisation_id,
        newsletter=membership.newsletter_desired == Desired.SUBSCRIBED.value,
        source=name, stripe_event_id=event_id))
