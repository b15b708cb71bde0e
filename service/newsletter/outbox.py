"""Delivering the enrollment outbox. The rows are written by the membership service in the
transaction of the change that caused them; here they are claimed, sent and retried (after
the response, best effort, and by `flask newsletter sync` / the worker)."""
from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import datetime, timedelta

from flask import current_app
from sqlalchemy import and_, exists, or_, select
from sqlalchemy.orm import Session, aliased

from ..db import utcnow
from ..domain.newsletter import Desired, OutboxStatus
from ..domain.retry import backoff_seconds
from ..logs import log_context
from ..models import Account, NewsletterOutbox
from .provider import Change, NewsletterProvider, ProviderError

log = logging.getLogger("service.newsletter")

PENDING, IN_FLIGHT, DELIVERED, FAILED, SUPERSEDED = (OutboxStatus.PENDING, OutboxStatus.IN_FLIGHT,
                                                     OutboxStatus.DELIVERED, OutboxStatus.FAILED,
                                                     OutboxStatus.SUPERSEDED)


# --- delivery ---------------------------------------------------------------------------------

@dataclass
class SyncReport:
    delivered: int = 0
    retried: int = 0
    failed: int = 0


def _claimable(now: datetime):
    other = aliased(NewsletterOutbox)
    busy = exists().where(other.account_id == NewsletterOutbox.account_id, other.id != NewsletterOutbox.id,
                          other.status == IN_FLIGHT, other.claimed_until >= now)
    older = exists().where(other.account_id == NewsletterOutbox.account_id, other.id < NewsletterOutbox.id,
                           other.status == PENDING)
    cond = and_(
        or_(and_(NewsletterOutbox.status == PENDING, NewsletterOutbox.next_attempt_at <= now),
            and_(NewsletterOutbox.status == IN_FLIGHT, NewsletterOutbox.claimed_until < now)),
        ~busy, ~older,
    )
    return cond


def claim(session: Session, limit: int, lease: float,
          exclude: set[int] | frozenset[int] = frozenset()) -> list[int]:
    """Claim due rows for this worker. On PostgreSQL, rows another worker holds are skipped
    (`FOR UPDATE SKIP LOCKED`), so two workers never send the same row at once."""
    now = utcnow()
    cond = _claimable(now)
    if exclude:
        cond = and_(cond, NewsletterOutbox.id.not_in(exclude))
    stmt = select(NewsletterOutbox).where(cond).order_by(NewsletterOutbox.id).limit(limit)
    if session.get_bind().dialect.name == "postgresql":
        stmt = stmt.with_for_update(skip_locked=True)
    rows = session.scalars(stmt).all()
    claimed: list[int] = []
    seen_accounts: set[int] = set()
    for row in rows:
        if row.account_id in seen_accounts:
            continue  # one change per member at a time: they are applied in order
        seen_accounts.add(row.account_id)
        row.status = IN_FLIGHT
        row.claimed_until = now + timedelta(seconds=lease)
        claimed.append(row.id)
    session.commit()
    return claimed


def _backoff(attempts: int, retry_after: float | None) -> float:
    cfg = current_app.config
    return backoff_seconds(attempts, cfg["NEWSLETTER_BACKOFF_BASE"], cfg["NEWSLETTER_BACKOFF_MAX"], retry_after)


def deliver(session: Session, provider: NewsletterProvider, row_id: int, report: SyncReport) -> None:
    row = session.get(NewsletterOutbox, row_id)
    if row is None or row.status != IN_FLIGHT:
        session.rollback()
        return
    with log_context(request_id=row.request_id, outbox_id=row.id, member_id=row.account_id):
        _deliver(session, provider, row, report)


def _deliver(session: Session, provider: NewsletterProvider, row: NewsletterOutbox, report: SyncReport) -> None:
    account = session.get(Account, row.account_id)
    membership = account.membership if account else None
    if account is None or membership is None:
        row.status = FAILED
        row.last_error = "member no longer exists"
        session.commit()
        return
    change = Change(desired=Desired(row.action), email=row.email, known_email=membership.newsletter_email,
                    name=row.payload.get("name", account.name), confirm_if_needed=bool(row.payload.get("confirm")),
                    language=account.language)
    row.attempts += 1
    # The call happens outside any open transaction: no lock is held across the network.
    session.commit()
    try:
        result = provider.apply(change)
    except ProviderError as exc:
        _failed(session, row, exc, report)
        return
    now = utcnow()
    row.status = DELIVERED
    row.delivered_at = now
    row.claimed_until = None
    row.last_error = result.note
    membership.newsletter_status = result.status
    membership.newsletter_email = None if result.status == "archived" else result.email
    membership.newsletter_synced_at = now
    if result.opted_out:
        # They unsubscribed in Mailchimp: remember their choice, never re-subscribe them.
        membership.newsletter_opt_in = False
        membership.newsletter_desired = Desired.UNSUBSCRIBED.value
    row_id, action = row.id, row.action
    session.commit()
    log.info("newsletter change %s (%s) delivered: %s", row_id, action, result.status)
    report.delivered += 1


def _failed(session: Session, row: NewsletterOutbox, exc: ProviderError, report: SyncReport) -> None:
    cfg = current_app.config
    row.last_error = str(exc)
    row.claimed_until = None
    newer = session.scalar(select(NewsletterOutbox.id).where(
        NewsletterOutbox.account_id == row.account_id, NewsletterOutbox.id > row.id,
        NewsletterOutbox.status.in_([PENDING, IN_FLIGHT])).limit(1))
    if newer is not None:
        row.status = SUPERSEDED
    elif exc.retryable and row.attempts < cfg["NEWSLETTER_MAX_ATTEMPTS"]:
        row.status = PENDING
        row.next_attempt_at = utcnow() + timedelta(seconds=_backoff(row.attempts, exc.retry_after))
        report.retried += 1
    else:
        row.status = FAILED  # shown to staff, who can retry it
        report.failed += 1
        log.error("newsletter change %s for member %s failed: %s", row.id, row.account_id, exc)
    session.commit()


def sync_once(session: Session, provider: NewsletterProvider, *, batch: int = 50) -> SyncReport:
    """Deliver what is due now: one attempt per row in this pass (retries wait for the next)."""
    report = SyncReport()
    lease = current_app.config["NEWSLETTER_LEASE_SECONDS"]
    retried: set[int] = set()  # only these are kept out of the rest of the pass (small)
    while True:
        ids = claim(session, batch, lease, retried)
        if not ids:
            return report
        for row_id in ids:
            before = report.retried
            deliver(session, provider, row_id, report)
            if report.retried != before:
                retried.add(row_id)


def retry_failed(session: Session, row_id: int) -> bool:
    row = session.get(NewsletterOutbox, row_id)
    if row is None or row.status != FAILED:
        return False
    row.status = PENDING
    row.attempts = 0
    row.next_attempt_at = utcnow()
    return True


def depth(session: Session) -> tuple[int, float | None]:
    """How many changes are due, and how long the oldest due one has waited (seconds)."""
    from sqlalchemy import func

    now = utcnow()
    count, oldest = session.execute(select(func.count(NewsletterOutbox.id), func.min(NewsletterOutbox.created_at))
                                    .where(_claimable(now))).one()
    return int(count or 0), (now - oldest).total_seconds() if oldest else None
