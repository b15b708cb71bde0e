"""Outgoing email through a durable outbox.

`send_mail` writes a `mail_outbox` row in the caller's session: the message commits with the
change that causes it, and a rollback discards it. The worker (`flask --app wsgi worker`)
delivers due rows: claimed with leases (`FOR UPDATE SKIP LOCKED` on PostgreSQL), retried with
backoff, `failed` after MAIL_MAX_ATTEMPTS. Every message has a plain-text and an HTML part.

Backends: `smtp` (SMTP_*), and `log` (development), which writes each message to the log, to
MAIL_LOG_PATH (JSON lines) and to `app.extensions["mail_outbox"]`.

With MAIL_DELIVER_INLINE (default: only when TESTING) the process that committed a message
also tries it at once: after the response inside a request, right after the commit outside
one. It claims the row like any worker, so a message is still delivered once.

Outside the layers: every layer may send mail.
"""
from __future__ import annotations

import html as html_module
import json
import logging
import re
import smtplib
import threading
from collections import deque
from dataclasses import dataclass
from datetime import datetime, timedelta
from email.message import EmailMessage
from email.utils import format_datetime, parseaddr
from enum import StrEnum
from functools import partial
from pathlib import Path
from typing import Any

from flask import Flask, Response, current_app, g, has_request_context
from sqlalchemy import and_, event, func, inspect, or_, select, update
from sqlalchemy.orm import Session

from .db import get_session, utcnow
from .domain.retry import backoff_seconds
from .i18n import current_language, is_rtl, known
from .logs import current_request_id, log_context
from .models import MailOutbox

log = logging.getLogger("service.mail")

_INLINE_ROWS = "mail_outbox_rows"  # Session.info: rows this session added, to try after its commit
_log_lock = threading.Lock()


class MailStatus(StrEnum):
    PENDING = "pending"
    IN_FLIGHT = "in_flight"
    DELIVERED = "delivered"
    FAILED = "failed"


# Kinds whose body holds a live single-use link: not kept once delivered.
CARRIES_LINKS = frozenset({"signin_link", "password_reset", "staff_invitation", "seat_invitation",
                           "seat_claim_confirm", "email_change_confirm", "organisation_contact"})


class MailError(Exception):
    """A message could not be sent. `permanent`: the server refused it for good (no retry);
    `unreachable`: no server answered (the rest of the batch waits for the next pass)."""

    def __init__(self, message: str, *, permanent: bool = False, unreachable: bool = False) -> None:
        super().__init__(message)
        self.permanent = permanent
        self.unreachable = unreachable


class MailMessage(EmailMessage):
    """An EmailMessage whose `get_content()` is the plain-text part (of text + HTML)."""

    def get_content(self, *args: Any, **kw: Any) -> Any:
        if self.is_multipart():
            body = self.get_body(("plain",))
            if body is not None:
                return body.get_content(*args, **kw)
        return super().get_content(*args, **kw)


def init_app(app: Flask) -> None:
    app.extensions.setdefault("mail_outbox", deque(maxlen=100))

    @app.after_request
    def _deliver_after_response(response: Response) -> Response:
        ids = g.pop("mail_after_response", None)
        if ids:
            response.call_on_close(partial(_deliver_ids_in_context, app, ids))
        return response


def _inline(app: Flask) -> bool:
    inline = app.config.get("MAIL_DELIVER_INLINE")
    return bool(app.config.get("TESTING")) if inline is None else bool(inline)


# --- writing ----------------------------------------------------------------------------------

def send_mail(to: str, subject: str, body: str, html: str | None = None, *, kind: str = "notice",
              account_id: int | None = None, lang: str | None = None, session: Session | None = None) -> MailOutbox:
    """Queue a message in `session` (default: the app context's): it is sent only if that
    transaction commits. The caller commits. `html` defaults to the text, escaped, with its
    links made clickable."""
    session = session if session is not None else get_session()
    now = utcnow()
    lang = known(lang) or current_language()
    to = "".join(to.split())
    if to.count("@") != 1 or any(c in to for c in ",;<>\"()"):
        raise MailError(f"not one email address: {to!r}")
    row = MailOutbox(to_address=to, subject=" ".join(subject.split()), text_body=body,
                     html_body=html if html is not None else text_to_html(body, lang=lang), language=lang, kind=kind,
                     account_id=account_id, status=MailStatus.PENDING.value, attempts=0, next_attempt_at=now,
                     created_at=now, request_id=current_request_id())
    session.add(row)
    from .membership.service import wake_worker  # late: membership sends mail too

    wake_worker(session, "mail")
    if _inline(current_app):
        session.info.setdefault(_INLINE_ROWS, []).append(row)
    return row


_URL = re.compile(r"https?://[^\s<>\"']+")
_TRAILING = ".,;:!?)]}'\""


def text_to_html(text: str, *, lang: str | None = None) -> str:
    """The HTML part: the text, every character escaped, paragraphs kept, http(s) links made
    clickable (nothing else becomes markup)."""
    def paragraph(chunk: str) -> str:
        return "<p>" + "<br>\n".join(_linkify(line) for line in chunk.split("\n")) + "</p>"

    chunks = [c.strip("\n") for c in re.split(r"\n\s*\n", text.replace("\r\n", "\n")) if c.strip()]
    attrs = ""
    if lang:
        attrs = f' lang="{html_module.escape(lang)}"' + (' dir="rtl"' if is_rtl(known(lang)) else "")
    return (f"<!DOCTYPE html>\n<html{attrs}>\n<head><meta charset=\"utf-8\"></head>\n"
            "<body style=\"font-family: sans-serif; line-height: 1.5\">\n"
            + "\n".join(paragraph(c) for c in chunks) + "\n</body>\n</html>\n")


def _linkify(line: str) -> str:
    """Only this service's own links become clickable: a URL typed into a name (an admin's,
    in an invitation to someone else) stays plain text."""
    from flask import current_app, has_app_context

    own = current_app.config.get("PUBLIC_BASE_URL", "").rstrip("/") + "/" if has_app_context() else None
    out, pos = [], 0
    for m in _URL.finditer(line):
        url = m.group(0).rstrip(_TRAILING)
        if own is not None and not url.startswith(own):
            continue  # left as text, escaped with the rest of the line
        out.append(html_module.escape(line[pos:m.start()]))
        safe = html_module.escape(url, quote=True)
        out.append(f'<a href="{safe}">{safe}</a>')
        pos = m.start() + len(url)
    out.append(html_module.escape(line[pos:]))
    return "".join(out)


@event.listens_for(Session, "after_commit")
def _after_commit(session: Session) -> None:
    """MAIL_DELIVER_INLINE: the rows this commit made durable are tried now (after the response
    inside a request). Rows rolled back are no longer persistent, and are left out."""
    rows = session.info.pop(_INLINE_ROWS, None)
    if not rows:
        return
    ids = [state.identity[0] for state in map(inspect, rows) if state.persistent and state.identity]
    if not ids:
        return
    if has_request_context():
        g.setdefault("mail_after_response", []).extend(ids)
        return
    try:
        _deliver_ids(ids)
    except Exception:  # noqa: BLE001 - best effort: the worker delivers what is left
        log.exception("mail: inline delivery failed; the worker will retry")


@event.listens_for(Session, "after_soft_rollback")
def _after_rollback(session: Session, previous_transaction) -> None:
    if session.info.get(_INLINE_ROWS) and previous_transaction.parent is None:
        session.info.pop(_INLINE_ROWS, None)


def _deliver_ids_in_context(app: Flask, ids: list[int]) -> None:
    with app.app_context():
        try:
            _deliver_ids(ids)
        except Exception:  # noqa: BLE001 - after the response: nobody to tell; the worker retries
            log.exception("mail: delivery after the response failed; the worker will retry")


def _deliver_ids(ids: list[int]) -> None:
    session = current_app.extensions["db_sessionmaker"]()  # never the session that just committed
    try:
        deliver_due(session, ids=ids)
    finally:
        session.close()


# --- delivery ---------------------------------------------------------------------------------

@dataclass
class MailReport:
    delivered: int = 0
    retried: int = 0
    failed: int = 0

    @property
    def touched(self) -> int:
        return self.delivered + self.retried + self.failed


@dataclass(frozen=True)
class Claimed:
    id: int
    lease_until: datetime
    attempts: int  # before this one
    to: str
    subject: str
    text: str
    html: str
    kind: str
    created_at: datetime
    language: str | None = None
    account_id: int | None = None
    request_id: str | None = None  # of the request that queued it, for the log lines


def _due(now: datetime):
    return or_(and_(MailOutbox.status == MailStatus.PENDING.value, MailOutbox.next_attempt_at <= now),
               and_(MailOutbox.status == MailStatus.IN_FLIGHT.value, MailOutbox.claimed_until < now))


def claim(session: Session, limit: int, lease: float, *, ids: list[int] | None = None,
          exclude: set[int] | frozenset[int] = frozenset()) -> list[Claimed]:
    """Claim due messages for this worker (a lease of `lease` seconds). On PostgreSQL rows
    another worker holds are skipped (`FOR UPDATE SKIP LOCKED`); on SQLite the write lock
    taken at BEGIN makes the claim one at a time."""
    now = utcnow()
    t = MailOutbox
    cond = _due(now)
    if ids is not None:
        cond = and_(cond, t.id.in_(ids))
    if exclude:
        cond = and_(cond, t.id.not_in(exclude))
    stmt = (select(t.id, t.attempts, t.to_address, t.subject, t.text_body, t.html_body, t.kind, t.created_at,
                   t.language, t.account_id, t.request_id)
            .where(cond).order_by(t.id).limit(limit))
    if session.get_bind().dialect.name == "postgresql":
        stmt = stmt.with_for_update(skip_locked=True)
    rows = session.execute(stmt).all()
    until = now + timedelta(seconds=lease)
    if rows:
        session.execute(update(t).where(t.id.in_([r.id for r in rows]))
                        .values(status=MailStatus.IN_FLIGHT.value, claimed_until=until))
    session.commit()
    return [Claimed(r.id, until, r.attempts, r.to_address, r.subject, r.text_body, r.html_body, r.kind, r.created_at,
                    r.language, r.account_id, r.request_id)
            for r in rows]


def _held(row_id: int, lease_until: datetime):
    """This worker's claim on the row, still live (the lease is the fencing token)."""
    return and_(MailOutbox.id == row_id, MailOutbox.status == MailStatus.IN_FLIGHT.value,
                MailOutbox.claimed_until == lease_until)


def deliver_due(session: Session, *, batch: int = 50, ids: list[int] | None = None) -> MailReport:
    """Deliver what is due now (or only `ids`): one attempt per message in this pass."""
    cfg = current_app.config
    report = MailReport()
    attempted: set[int] = set()
    while True:
        claimed = claim(session, batch, cfg["MAIL_LEASE_SECONDS"], ids=ids, exclude=attempted)
        if not claimed:
            return report
        for n, item in enumerate(claimed):
            attempted.add(item.id)
            try:
                with log_context(request_id=item.request_id, outbox_id=item.id, member_id=item.account_id):
                    _deliver_one(session, item, report)
            except MailError as exc:  # no server answered: the rest waits for the next pass
                log.warning("mail: server unreachable (%s); %d message(s) wait for the next pass",
                            exc, len(claimed) - n - 1)
                _release(session, claimed[n + 1:])
                return report


def _deliver_one(session: Session, item: Claimed, report: MailReport) -> None:
    cfg = current_app.config
    now = utcnow()
    fresh = now + timedelta(seconds=cfg["MAIL_LEASE_SECONDS"])
    # Still ours (the lease did not run out while earlier messages were sent)? Count the attempt
    # and renew the lease before going to the network; a crash from here counts as an attempt.
    started = session.execute(update(MailOutbox).where(_held(item.id, item.lease_until), MailOutbox.claimed_until > now)
                              .values(attempts=MailOutbox.attempts + 1, claimed_until=fresh))
    if started.rowcount != 1:
        session.rollback()
        log.warning("mail %s: the claim ran out before sending; left to whoever holds it", item.id)
        return
    session.commit()
    attempts = item.attempts + 1
    try:
        msg = build_message(item)
    except (ValueError, TypeError) as exc:  # a header no message can carry: never a retry
        _failed(session, item, fresh, attempts, MailError(f"cannot build the message: {exc}", permanent=True), report)
        return
    try:
        _send(msg, item)
    except MailError as exc:
        _failed(session, item, fresh, attempts, exc, report)
        if exc.unreachable:
            raise
        return
    except Exception as exc:  # noqa: BLE001 - a shape we did not expect, or a bug: never stop the worker
        log.exception("mail %s could not be sent", item.id)
        _failed(session, item, fresh, attempts, MailError(f"error: {exc.__class__.__name__}: {exc}"), report)
        return
    # Delivered: a message carrying a live link (sign-in, reset, invitation, confirmation) loses
    # its bodies; the link tables keep only hashes, and so does this table once it is out.
    values: dict = {"status": MailStatus.DELIVERED.value, "sent_at": utcnow(), "claimed_until": None,
                    "last_error": None}
    if item.kind in CARRIES_LINKS:
        values.update(text_body="", html_body="")
    done = session.execute(update(MailOutbox).where(_held(item.id, fresh)).values(**values))
    session.commit()
    if done.rowcount != 1:
        log.warning("mail %s: sent, but the claim had run out (another worker may send it again)", item.id)
    else:
        log.info("mail %s (%s) delivered (attempt %d)", item.id, item.kind, attempts)
    report.delivered += 1


def _failed(session: Session, item: Claimed, lease_until: datetime, attempts: int, exc: MailError,
            report: MailReport) -> None:
    cfg = current_app.config
    values: dict[str, Any] = {"last_error": str(exc)[:1000], "claimed_until": None}
    if exc.permanent or attempts >= cfg["MAIL_MAX_ATTEMPTS"]:
        values["status"] = MailStatus.FAILED.value
        report.failed += 1
        log.error("mail %s (%s) to %s failed after %d attempt(s): %s", item.id, item.kind, item.to, attempts, exc)
    else:
        values["status"] = MailStatus.PENDING.value
        values["next_attempt_at"] = utcnow() + timedelta(
            seconds=backoff_seconds(attempts, cfg["MAIL_BACKOFF_BASE"], cfg["MAIL_BACKOFF_MAX"]))
        report.retried += 1
        log.warning("mail %s (%s) will be retried (attempt %d): %s", item.id, item.kind, attempts, exc)
    session.execute(update(MailOutbox).where(_held(item.id, lease_until)).values(**values))
    session.commit()


def _release(session: Session, items: list[Claimed]) -> None:
    """Give back claims not attempted in this pass (no attempt is counted)."""
    for item in items:
        session.execute(update(MailOutbox).where(_held(item.id, item.lease_until))
                        .values(status=MailStatus.PENDING.value, claimed_until=None))
    session.commit()


def depth(session: Session) -> tuple[int, float | None]:
    """How many messages are due, and how long the oldest due one has waited (seconds)."""
    now = utcnow()
    count, oldest = session.execute(select(func.count(MailOutbox.id), func.min(MailOutbox.created_at))
                                    .where(_due(now))).one()
    return int(count or 0), (now - oldest).total_seconds() if oldest else None


def retry_failed(session: Session, row_id: int) -> bool:
    """Staff: a failed message gets another round of attempts (the caller commits)."""
    row = session.get(MailOutbox, row_id)
    if row is None or row.status != MailStatus.FAILED.value:
        return False
    row.status, row.attempts, row.next_attempt_at = MailStatus.PENDING.value, 0, utcnow()
    return True


# --- the message and the backends -------------------------------------------------------------

def build_message(item: Claimed) -> MailMessage:
    cfg = current_app.config
    domain = parseaddr(cfg["MAIL_FROM"])[1].rpartition("@")[2] or "localhost"
    msg = MailMessage()
    msg["From"] = cfg["MAIL_FROM"]
    msg["To"] = item.to
    msg["Subject"] = item.subject
    msg["Date"] = format_datetime(utcnow())
    # The same on every attempt: a receiver can drop a duplicate (a send whose outcome was lost).
    msg["Message-ID"] = f"<mail-{item.id}.{int(item.created_at.timestamp() * 1000)}@{domain}>"
    msg.set_content(item.text)
    msg.add_alternative(item.html, subtype="html")
    if item.language:  # after the content: setting it clears Content-* headers
        msg["Content-Language"] = item.language
    return msg


def _send(msg: MailMessage, item: Claimed) -> None:
    cfg = current_app.config
    backend = cfg["MAIL_BACKEND"]
    if backend == "log":
        _log_backend(msg, item)
        return
    if backend != "smtp":
        raise MailError(f"unknown MAIL_BACKEND {backend!r}")
    try:
        smtp = smtplib.SMTP(cfg["SMTP_HOST"], cfg["SMTP_PORT"], timeout=cfg["SMTP_TIMEOUT"])
    except (OSError, smtplib.SMTPException) as exc:
        raise MailError(f"cannot reach {cfg['SMTP_HOST']}:{cfg['SMTP_PORT']}: {exc}", unreachable=True) from exc
    try:
        with smtp:
            if cfg["SMTP_STARTTLS"]:
                smtp.starttls()
            if cfg["SMTP_USERNAME"]:
                smtp.login(cfg["SMTP_USERNAME"], cfg["SMTP_PASSWORD"])
            smtp.send_message(msg)
    except smtplib.SMTPRecipientsRefused as exc:
        codes = [code for code, _ in exc.recipients.values()]
        raise MailError(f"recipient refused: {exc.recipients}", permanent=all(c >= 500 for c in codes)) from exc
    except smtplib.SMTPDataError as exc:
        raise MailError(f"message refused: {exc.smtp_code} {exc.smtp_error!r}", permanent=exc.smtp_code >= 500) from exc
    except (OSError, smtplib.SMTPException) as exc:
        raise MailError(f"{exc.__class__.__name__}: {exc}") from exc


def _log_backend(msg: MailMessage, item: Claimed) -> None:
    app = current_app
    text = msg.get_content()
    log.warning("MAIL (log backend) to=%s subject=%s\n%s", msg["To"], msg["Subject"], text)
    record = {"at": utcnow().isoformat(), "id": item.id, "kind": item.kind, "language": item.language,
              "message_id": msg["Message-ID"],
              "from": msg["From"], "to": msg["To"],
              "subject": msg["Subject"], "text": text, "html": msg.get_body(("html",)).get_content()}
    path = app.config.get("MAIL_LOG_PATH") or str(Path(app.instance_path) / "mail-log.jsonl")
    with _log_lock:
        try:
            Path(path).parent.mkdir(parents=True, exist_ok=True)
            with open(path, "a", encoding="utf-8") as fh:
                fh.write(json.dumps(record, ensure_ascii=False) + "\n")
        except OSError as exc:
            raise MailError(f"cannot write {path}: {exc}") from exc
        app.extensions.setdefault("mail_outbox", deque(maxlen=100)).append(msg)
