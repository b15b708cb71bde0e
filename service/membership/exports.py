"""CSV exports of the staff list, as jobs the worker runs: never cut off by a web timeout.

On PostgreSQL the rows come from `COPY (SELECT ...) TO STDOUT` through psycopg's copy API,
written to the file as they arrive (flat memory); elsewhere from a plain cursor. Cells that a
spreadsheet would run as a formula are neutralised in the query itself. A job is claimed with a
lease that its progress renews: a job whose worker died is marked failed and its partial file
removed, never offered as complete. Files expire after EXPORT_TTL_HOURS.
"""
from __future__ import annotations

import csv
import logging
import os
import secrets
import time
from datetime import timedelta
from pathlib import Path
from typing import Any

from flask import current_app
from sqlalchemy import Select, String, case, cast, func, literal, select, update
from sqlalchemy.orm import Session

from ..db import utcnow
from ..domain.membership import Role, MembershipStatus, Via
from ..models import Account, AuditLog, ExportJob, Membership, Organisation
from . import directory
from .service import grace, wake_worker

log = logging.getLogger("service.exports")

COLUMNS = ["id", "email", "name", "status", "entitled", "paid_through", "cancel_at_period_end",
           "level", "level_amount", "level_currency", "level_interval", "stripe_customer_id",
           "newsletter_status", "created_at", "via", "organisation",
           # What a re-import needs to give every member back exactly (billing/imports.py).
           "newsletter_opt_in", "comped_at", "comped_until", "comp_reason", "language"]
FORMULA_STARTS = ["=", "+", "-", "@", "\t", "\r"]
LEASE_SECONDS = 60
PROGRESS_EVERY = 1.0  # seconds between progress writes


class ExportNotReady(Exception):
    pass


def filters_of(f: directory.MemberFilter) -> dict[str, Any]:
    return {"q": f.q, "status": f.status.value if f.status else None, "entitled": f.entitled,
            "paying_twice": f.paying_twice, "sort": f.sort}


def filter_from(data: dict[str, Any]) -> directory.MemberFilter:
    return directory.MemberFilter(q=data.get("q") or "", status=MembershipStatus(data["status"]) if data.get("status")
                                  else None, entitled=data.get("entitled"), paying_twice=bool(data.get("paying_twice")),
                                  sort=data.get("sort") or "newest")


def request_export(session: Session, actor: Account, f: directory.MemberFilter) -> ExportJob:
    estimate, _ = directory.count(session, f)
    job = ExportJob(requested_by=actor.id, filters=filters_of(f), status="pending", rows_estimate=estimate)
    session.add(job)
    session.flush()
    session.add(AuditLog(actor_id=actor.id, actor_email=actor.email, action="export_request",
                         details={"job": job.id, **filters_of(f)}))
    wake_worker(session, "exports")
    session.commit()
    return job


def _safe(column):
    """A text cell a spreadsheet would run as a formula gets a leading apostrophe."""
    text = func.coalesce(cast(column, String), "")
    return case((func.substr(text, 1, 1).in_(FORMULA_STARTS), literal("'").concat(text)), else_=text)


def _iso(session: Session, column):
    if session.get_bind().dialect.name == "postgresql":
        return func.to_char(func.timezone("UTC", column), 'YYYY-MM-DD"T"HH24:MI:SS.US"+00:00"')
    return func.replace(column, " ", "T")  # SQLite keeps "YYYY-MM-DD HH:MM:SS+00:00"


def export_select(session: Session, f: directory.MemberFilter) -> Select:
    now = utcnow()
    entitled = directory.entitled_clause(now, grace())
    # What entitles the member, and for a seat the organisation's name (as the member JSON).
    via = directory.via_clause(now, grace())
    stmt = directory._filtered(f, [
        Account.id, _safe(Account.email), _safe(Account.name), cast(Membership.status, String),
        case((entitled, "yes"), else_="no"), _iso(session, Membership.paid_through),
        case((Membership.cancel_at_period_end.is_(True), "yes"), else_="no"), _safe(Membership.level_name),
        Membership.level_amount, Membership.level_currency, Membership.level_interval,
        _safe(Membership.stripe_customer_id), _safe(Membership.newsletter_status), _iso(session, Account.created_at),
        func.coalesce(via, ""), case((via == Via.ORGANISATION.value, _safe(Organisation.name)), else_=""),
        case((Membership.newsletter_opt_in.is_(True), "yes"), else_="no"), _iso(session, Membership.comped_at),
        _iso(session, Membership.comped_until), _safe(Membership.comp_reason), _safe(Account.language),
    ])
    if not (f.q or f.email):
        stmt = stmt.join(Account, Account.id == Membership.account_id)
    stmt = stmt.outerjoin(Organisation, Organisation.id == Membership.organisation_id)
    return directory._ordered(f, stmt.where(Account.role == "member"))


def export_dir() -> Path:
    """EXPORT_DIR; a relative one is under the instance folder (so the worker that writes and the
    web process that serves agree, whatever their working directories)."""
    path = Path(current_app.config["EXPORT_DIR"])
    if not path.is_absolute():
        path = Path(current_app.instance_path) / path
    path.mkdir(parents=True, exist_ok=True)
    return path


def _claim(session: Session) -> ExportJob | None:
    now = utcnow()
    # A job whose worker stopped (its lease ran out): failed, never offered as complete.
    for dead in session.scalars(select(ExportJob).where(ExportJob.status == "running",
                                                        ExportJob.claimed_until < now).with_for_update(skip_locked=True)):
        dead.status, dead.error, dead.finished_at = "failed", "the worker stopped while writing it", now
        if dead.file_name:
            (export_dir() / (dead.file_name + ".part")).unlink(missing_ok=True)
    stmt = select(ExportJob).where(ExportJob.status == "pending").order_by(ExportJob.id).limit(1)
    if session.get_bind().dialect.name == "postgresql":
        stmt = stmt.with_for_update(skip_locked=True)
    job = session.scalars(stmt).first()
    if job is not None:
        job.status, job.started_at = "running", now
        job.claimed_until = now + timedelta(seconds=LEASE_SECONDS)
        job.file_name = f"members-{job.id}-{secrets.token_hex(8)}.csv"
    session.commit()
    return job


def run_due(session: Session) -> int:
    """Expire old files, then run the pending jobs; returns how many jobs ran."""
    expire(session)
    ran = 0
    while True:
        job = _claim(session)
        if job is None:
            return ran
        run_job(session, job.id)
        ran += 1


def run_job(session: Session, job_id: int) -> None:
    job = session.get(ExportJob, job_id)
    f = filter_from(job.filters)
    part = export_dir() / (job.file_name + ".part")
    try:
        if session.get_bind().dialect.name == "postgresql":
            rows = _write_with_copy(session, job_id, f, part)
        else:
            rows = _write_with_cursor(session, job_id, f, part)
    except Exception as exc:  # noqa: BLE001 - any failure is the job's outcome, shown to staff
        session.rollback()
        part.unlink(missing_ok=True)
        log.exception("export %s failed", job_id)
        session.execute(update(ExportJob).where(ExportJob.id == job_id).values(
            status="failed", error=exc.__class__.__name__, finished_at=utcnow()))
        session.commit()
        return
    now = utcnow()
    # Done only if the job is still ours: a worker whose lease ran out (another one marked the
    # job failed and removed the part file) leaves it failed.
    finished = session.execute(update(ExportJob).where(ExportJob.id == job_id, ExportJob.status == "running").values(
        status="done", rows_done=rows, finished_at=now, claimed_until=None,
        expires_at=now + timedelta(hours=current_app.config["EXPORT_TTL_HOURS"])))
    try:
        if finished.rowcount != 1:
            raise FileNotFoundError("the job was taken over")
        os.replace(part, export_dir() / job.file_name)
    except OSError as exc:
        session.rollback()
        part.unlink(missing_ok=True)
        log.error("export %s not completed here: %s", job_id, exc)
        return
    session.commit()


def _write_with_copy(session: Session, job_id: int, f: directory.MemberFilter, part: Path) -> int:
    """PostgreSQL's COPY, streamed to the file chunk by chunk."""
    stmt = export_select(session, f)
    compiled = stmt.compile(dialect=session.get_bind().dialect, compile_kwargs={"render_postcompile": True})
    header = ",".join(COLUMNS).encode() + b"\n"
    rows, last = 0, time.monotonic()
    raw = session.connection().connection.driver_connection
    with open(part, "wb") as out, raw.cursor() as cur:
        out.write(header)
        with cur.copy(f"COPY ({compiled}) TO STDOUT WITH (FORMAT csv)", compiled.params) as copy:
            for chunk in copy:
                out.write(chunk)
                rows += bytes(chunk).count(b"\n")
                if time.monotonic() - last > PROGRESS_EVERY:
                    _progress_elsewhere(session, job_id, rows)
                    last = time.monotonic()
    session.commit()
    return rows


def _progress_elsewhere(session: Session, job_id: int, rows: int) -> None:
    """Progress from another connection: the COPY's own transaction is still open."""
    with session.get_bind().engine.begin() as conn:
        conn.execute(update(ExportJob).where(ExportJob.id == job_id, ExportJob.status == "running")
                     .values(rows_done=rows, claimed_until=utcnow() + timedelta(seconds=LEASE_SECONDS)))


def _write_with_cursor(session: Session, job_id: int, f: directory.MemberFilter, part: Path) -> int:
    rows, last = 0, time.monotonic()
    with open(part, "w", newline="") as out:
        writer = csv.writer(out)
        writer.writerow(COLUMNS)
        result = session.execute(export_select(session, f).execution_options(yield_per=2000))
        for batch in result.partitions():
            writer.writerows(batch)
            rows += len(batch)
            if time.monotonic() - last > PROGRESS_EVERY:
                _progress_elsewhere(session, job_id, rows)
                last = time.monotonic()
    session.commit()
    return rows


def expire(session: Session) -> int:
    now = utcnow()
    old = session.scalars(select(ExportJob).where(ExportJob.status == "done", ExportJob.expires_at < now)).all()
    for job in old:
        if job.file_name:
            (export_dir() / job.file_name).unlink(missing_ok=True)
        job.status = "expired"
    session.commit()
    return len(old)


def may_see(actor: Account, job: ExportJob) -> bool:
    """An export is its requester's (its filters are their search); admins see every one."""
    return job.requested_by == actor.id or actor.role == Role.ADMIN


def download_path(session: Session, actor: Account, job_id: int) -> Path:
    """The finished file, if it is complete and not expired; the download is audited."""
    job = session.get(ExportJob, job_id)
    if job is None or not may_see(actor, job) or job.status != "done" or not job.file_name \
            or (job.expires_at and job.expires_at < utcnow()):
        raise ExportNotReady()
    path = export_dir() / job.file_name
    if not path.exists():
        raise ExportNotReady()
    session.add(AuditLog(actor_id=actor.id, actor_email=actor.email, action="export_download",
                         details={"job": job_id, "rows": job.rows_done}))
    session.commit()
    return path


def depth(session: Session) -> tuple[int, float | None]:
    from sqlalchemy import func

    now = utcnow()
    count, oldest = session.execute(select(func.count(ExportJob.id), func.min(ExportJob.created_at))
                                    .where(ExportJob.status == "pending")).one()
    return int(count or 0), (now - oldest).total_seconds() if oldest else None
