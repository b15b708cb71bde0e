"""The worker's Stripe queue: stored events applied in Stripe's order, durably.

- A worker claims due events with `FOR UPDATE SKIP LOCKED` (PostgreSQL), so any number of
  workers share the queue and never take the same event; a claim is a lease, so a killed
  worker's events are taken over when it expires.
- One customer's events are applied in Stripe's `created` order: an event is claimable only
  when no older event of its customer is still waiting.
- Applying an event and recording its outcome commit together (never half-applied). A failure
  is retried with exponential backoff and jitter; after the last attempt the event is `failed`
  and shown to staff, who can replay it.
- The ordering rules of `lifecycle.py` still hold on top (an older snapshot never overwrites a
  newer one), so a replay or a late retry never undoes newer truth.
"""
from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import datetime, timedelta
from enum import StrEnum

from flask import current_app
from sqlalchemy import and_, bindparam, exists, or_, select, update
from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.orm import Session, aliased

from ..db import utcnow
from ..domain.retry import backoff_seconds
from ..logs import log_context
from .. import metrics
from ..membership import catalogue
from ..membership.service import wake_worker
from ..models import StripeCustomer, StripeEvent
from .gateway import BillingError, BillingGateway
from .webhooks import EventOutcome, Outcome, handle

log = logging.getLogger("service.billing.queue")


class QueueStatus(StrEnum):
    PENDING = "pending"
    IN_FLIGHT = "in_flight"
    DONE = "done"
    FAILED = "failed"


@dataclass
class QueueReport:
    applied: int = 0
    retried: int = 0
    failed: int = 0

    @property
    def touched(self) -> int:
        return self.applied + self.retried + self.failed


def _claimable(now: datetime):
    e, older = StripeEvent, aliased(StripeEvent)
    due = or_(and_(e.status == QueueStatus.PENDING, e.next_attempt_at <= now),
              and_(e.status == QueueStatus.IN_FLIGHT, e.claimed_until < now))
    waiting_older = exists().where(
        older.customer_stripe_id == e.customer_stripe_id,
        older.status.in_([QueueStatus.PENDING, QueueStatus.IN_FLIGHT]),
        or_(older.stripe_created_at < e.stripe_created_at,
            and_(older.stripe_created_at == e.stripe_created_at, older.id < e.id)),
    )
    return and_(due, or_(e.customer_stripe_id.is_(None), ~waiting_older))


@dataclass(frozen=True)
class Claimed:
    id: int
    payload: dict
    customer_stripe_id: str | None
    account_id: int | None
    # The claim: `claimed_until` as this worker set it. Recording an outcome needs it to be
    # unchanged, so a worker whose lease ran out (and whose event another worker took over)
    # never records, retries or fails an event it no longer holds.
    lease_until: datetime | None = None
    request_id: str | None = None  # of the webhook delivery that stored it, for the log lines


def claim(session: Session, limit: int, lease: float,
          exclude: set[int] | frozenset[int] = frozenset()) -> list[Claimed]:
    """Claim up to `limit` due events, one per customer, oldest first; commit the claim."""
    now = utcnow()
    cond = _claimable(now)
    if exclude:
        cond = and_(cond, StripeEvent.id.not_in(exclude))
    stmt = (select(StripeEvent.id, StripeEvent.payload, StripeEvent.customer_stripe_id, StripeEvent.account_id,
                   StripeEvent.status, StripeEvent.attempts, StripeEvent.request_id)
            .where(cond).order_by(StripeEvent.stripe_created_at, StripeEvent.id).limit(limit))
    if session.get_bind().dialect.name == "postgresql":
        stmt = stmt.with_for_update(skip_locked=True, of=StripeEvent)
    claimed: list[Claimed] = []
    abandoned: list[tuple[int, int]] = []  # (id, attempts so far) of claims whose worker stopped
    customers: set[str] = set()
    until = now + timedelta(seconds=lease)
    most = current_app.config["STRIPE_EVENT_MAX_ATTEMPTS"]
    for event_id, payload, customer, account_id, status, attempts, request_id in session.execute(stmt):
        if customer is not None:
            if customer in customers:
                continue  # one of a customer's events at a time: they go in order
            customers.add(customer)
        if status == QueueStatus.IN_FLIGHT:
            # Its worker stopped holding it (killed, or it outlived the lease): that counts as
            # an attempt, so an event that kills every worker ends `failed` (shown to staff, and
            # its customer's later events go on), never retried forever out of sight.
            abandoned.append((event_id, attempts + 1))
            if attempts + 1 >= most:
                session.execute(update(StripeEvent).where(StripeEvent.id == event_id).values(
                    status=QueueStatus.FAILED, attempts=attempts + 1, claimed_until=None,
                    last_error=f"the worker applying it stopped {attempts + 1} times (killed, or slower than its "
                               "lease): failed, for staff to look at"))
                log.error("Stripe event %s failed: its workers stopped %s times", event_id, attempts + 1)
                continue
        claimed.append(Claimed(event_id, payload, customer, account_id, until, request_id))
    if claimed:
        session.execute(update(StripeEvent).where(StripeEvent.id.in_([c.id for c in claimed]))
                        .values(status=QueueStatus.IN_FLIGHT, claimed_until=until))
        taken = {c.id for c in claimed}
        for event_id, attempts in abandoned:
            if event_id in taken:
                session.execute(update(StripeEvent).where(StripeEvent.id == event_id).values(
                    attempts=attempts, last_error="a worker stopped while applying it; taken over"))
    session.commit()
    return claimed


def _backoff(attempts: int) -> float:
    cfg = current_app.config
    return backoff_seconds(attempts, cfg["STRIPE_EVENT_BACKOFF_BASE"], cfg["STRIPE_EVENT_BACKOFF_MAX"])


def apply_event(session: Session, gateway: BillingGateway, event: Claimed, report: QueueReport) -> EventOutcome | None:
    """Apply one claimed event; the change and the event's outcome commit together (or neither:
    the event stays claimable and is retried)."""
    payload = event.payload if isinstance(event.payload, dict) else {}
    with log_context(request_id=event.request_id, stripe_event_id=payload.get("id"), member_id=event.account_id):
        before = (report.applied, report.retried, report.failed)
        outcome = _apply_event(session, gateway, event, report)
        kind = str(payload.get("type") or "unknown")
        if outcome is not None:
            metrics.stripe_event_applied(kind, outcome.value)
        elif report.failed != before[2]:
            metrics.stripe_event_applied(kind, "failed")
        elif report.retried != before[1]:
            metrics.stripe_event_applied(kind, "retried")
        return outcome


def _apply_event(session: Session, gateway: BillingGateway, event: Claimed, report: QueueReport) -> EventOutcome | None:
    try:
        result = handle(session, gateway, event.payload)
    except BillingError as exc:
        if exc.retryable:
            return _retry(session, event, f"Stripe: {exc.detail}", report)
        # Stripe says the object is gone for good: drop partial work and keep the event as
        # failed, for staff to see (and queue again once the cause is fixed).
        return _retry(session, event, f"Stripe refused a read: {exc.detail}", report, final=True)
    except SQLAlchemyError as exc:
        return _retry(session, event, f"database: {exc.__class__.__name__}", report)
    except Exception as exc:  # noqa: BLE001  (a shape we did not expect, or a bug: never stop the worker)
        log.exception("Stripe event %s could not be applied", event.id)
        return _retry(session, event, f"error: {exc.__class__.__name__}: {str(exc)[:300]}", report)
    account_id = result.account.id if result.account is not None else None  # before the commit expires it
    try:
        if not _record(session, event, result):
            session.rollback()
            log.warning("Stripe event %s: the claim ran out and another worker took it; not recorded here", event.id)
            return None
        session.commit()
    except SQLAlchemyError as exc:
        return _retry(session, event, f"database: {exc.__class__.__name__}", report)
    report.applied += 1
    with log_context(member_id=account_id):
        log.info("Stripe event %s (%s) applied: %s", event.payload.get("id"), event.payload.get("type"),
                 result.outcome.value)
    return result.outcome


_EVENTS = StripeEvent.__table__
_RECORD = _EVENTS.update().where(_EVENTS.c.id == bindparam("event_id"),
                                  _EVENTS.c.status == QueueStatus.IN_FLIGHT.value,
                                  _EVENTS.c.claimed_until == bindparam("lease_until"))


def _record(session: Session, event: Claimed, result: Outcome) -> bool:
    """The outcome, if this worker still holds the claim (False: it does not; roll back)."""
    values: dict = {"outcome": result.outcome.value, "note": result.note, "status": QueueStatus.DONE.value,
                    "applied_at": utcnow(), "claimed_until": None, "last_error": None}
    customer = event.customer_stripe_id
    if result.customer_id and not customer:
        values["customer_stripe_id"] = customer = result.customer_id
    if result.account is not None:
        values["account_id"] = result.account.id
    elif customer and event.account_id is None:
        values["account_id"] = session.scalar(
            select(StripeCustomer.account_id).where(StripeCustomer.stripe_id == customer))
    session.flush()  # the change first, then the record (a Core statement: no StripeEvent is loaded here)
    done = session.connection().execute(_RECORD, {"event_id": event.id, "lease_until": event.lease_until,
                                                  **values})  # SET: the keys given
    return done.rowcount == 1


def _retry(session: Session, event: Claimed, error: str, report: QueueReport, final: bool = False) -> None:
    """Put the event off (backoff), or fail it after the last attempt (`final`: at once)."""
    session.rollback()
    row = session.get(StripeEvent, event.id, with_for_update=True, populate_existing=True)
    if row is None or row.status != QueueStatus.IN_FLIGHT or row.claimed_until != event.lease_until:
        session.rollback()  # no longer ours: its new holder decides
        return None
    row.attempts += 1
    row.last_error = error
    row.claimed_until = None
    if final or row.attempts >= current_app.config["STRIPE_EVENT_MAX_ATTEMPTS"]:
        row.status = QueueStatus.FAILED  # shown to staff, who can replay it
        if final:
            row.outcome, row.note = EventOutcome.FAILED.value, error[:500]
        report.failed += 1
        log.error("Stripe event %s (%s) failed after %s attempts: %s", row.stripe_id, row.type, row.attempts, error)
    else:
        row.status = QueueStatus.PENDING
        row.next_attempt_at = utcnow() + timedelta(seconds=_backoff(row.attempts))
        report.retried += 1
        log.warning("Stripe event %s (%s) will be retried: %s", row.stripe_id, row.type, error)
    session.commit()
    return None


def run_due(session: Session, gateway: BillingGateway, *, batch: int = 100) -> QueueReport:
    """Apply what is due now (each event at most once in this pass)."""
    report = QueueReport()
    try:
        catalogue.ensure_once(session, gateway)  # after a failure, not asked again for a minute
        session.commit()
    except BillingError as exc:
        session.rollback()
        log.warning("catalogue not refreshed (%s); applying events with the catalogue as it stands, "
                    "asking Stripe again in %s s", exc.detail.splitlines()[0], catalogue.RETRY_SECONDS)
    lease = current_app.config["STRIPE_EVENT_LEASE_SECONDS"]
    # An event is tried at most once a pass: one whose attempt was put off is kept out of the
    # rest of the pass (a set as small as the failures, not one id per applied event).
    retried: set[int] = set()
    while True:
        claimed = claim(session, batch, lease, retried)
        if not claimed:
            return report
        for n, event in enumerate(claimed):
            if utcnow() > event.lease_until - timedelta(seconds=lease / 2):
                # Half the lease is gone (slow Stripe reads): hand the rest back before it runs
                # out under us, and claim afresh.
                _release(session, claimed[n:])
                break
            before = report.retried
            apply_event(session, gateway, event, report)
            if report.retried != before:
                retried.add(event.id)


def _release(session: Session, events: list[Claimed]) -> None:
    """Give claimed events back to the queue (still ours only), to be claimed again at once."""
    for event in events:
        session.execute(update(StripeEvent).where(
            StripeEvent.id == event.id, StripeEvent.status == QueueStatus.IN_FLIGHT,
            StripeEvent.claimed_until == event.lease_until).values(status=QueueStatus.PENDING, claimed_until=None))
    session.commit()


def requeue(session: Session, stripe_id: str) -> StripeEvent | None:
    """Put a failed event back in the queue (staff, once its cause is fixed), or an unlinked one
    (its customer has since been linked): the worker applies it in its customer's order like any
    delivery, and the ordering rules decide as for any delivery (a stale event stays stale).
    Only those two can be replayed; the caller commits."""
    row = session.scalars(select(StripeEvent).where(StripeEvent.stripe_id == stripe_id)
                          .with_for_update()).first()
    if row is None or not replayable(row):
        return None
    row.status = QueueStatus.PENDING
    row.attempts = 0
    row.next_attempt_at = utcnow()
    row.claimed_until = None
    wake_worker(session, "stripe_events")
    return row


def replayable(row: StripeEvent) -> bool:
    return row.status == QueueStatus.FAILED or (row.status == QueueStatus.DONE and row.outcome == "unlinked")


def failed_count(session: Session) -> int:
    from sqlalchemy import func

    try:
        return int(session.scalar(select(func.count(StripeEvent.id)).where(StripeEvent.status == QueueStatus.FAILED))
                   or 0)
    except SQLAlchemyError:
        session.rollback()
        return 0


def troubled(session: Session, limit: int = 200) -> list[StripeEvent]:
    """Events that failed for good, are waiting to be retried, or are held by a worker whose
    lease ran out, newest first (for staff)."""
    return list(session.scalars(
        select(StripeEvent).where(or_(StripeEvent.status == QueueStatus.FAILED,
                                      and_(StripeEvent.status == QueueStatus.PENDING, StripeEvent.attempts > 0),
                                      and_(StripeEvent.status == QueueStatus.IN_FLIGHT,
                                           StripeEvent.claimed_until < utcnow())))
        .order_by(StripeEvent.received_at.desc(), StripeEvent.id.desc()).limit(limit)))


def depth(session: Session) -> tuple[int, float | None]:
    """How many events wait, and how long the oldest due one has waited (seconds)."""
    from sqlalchemy import func

    now = utcnow()
    waiting = and_(StripeEvent.status.in_([QueueStatus.PENDING, QueueStatus.IN_FLIGHT]))
    count, oldest = session.execute(select(func.count(StripeEvent.id), func.min(StripeEvent.received_at))
                                    .where(waiting, or_(StripeEvent.next_attempt_at <= now,
                                                        StripeEvent.status == QueueStatus.IN_FLIGHT))).one()
    return int(count or 0), (now - oldest).total_seconds() if oldest else None


# The staff console warns when the oldest due Stripe event has waited longer than this.
BEHIND_SECONDS = 300


def behind(session: Session) -> float | None:
    """Seconds the oldest due event has waited, when that is too long (the worker is down or
    not keeping up); else None."""
    try:
        _, oldest = depth(session)
    except SQLAlchemyError:
        session.rollback()
        return None
    return oldest if oldest is not None and oldest > BEHIND_SECONDS else None
