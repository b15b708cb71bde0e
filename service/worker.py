"""`flask --app wsgi worker [--once]`: the one worker, any number of copies.

Each pass applies the Stripe events that are due, delivers the DAWNS Digest changes and the
mail that are due, and runs the export jobs. Rows are claimed with leases (`FOR UPDATE SKIP
LOCKED` on PostgreSQL), so copies share the work and a killed copy's claims are taken over. On
PostgreSQL the worker sleeps on LISTEN/NOTIFY and wakes when a webhook or a change commits;
otherwise it looks every WORKER_POLL_SECONDS. `--once` does everything that is due, then exits.
An entry point like `wsgi.py`: it drives billing, newsletter and exports, so it sits above the
layers.
"""
from __future__ import annotations

import logging
import select as select_module
import signal
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field

import click
from flask import Flask, current_app
from flask.cli import with_appcontext
from sqlalchemy.exc import SQLAlchemyError

from . import mail as mail_outbox
from .billing import queue as stripe_queue
from .billing.runtime import get_gateway
from .db import close_session, get_engine, get_session, queue_session
from .membership import exports
from .membership.service import WAKE_CHANNEL, recompute_ended
from .newsletter.outbox import sync_once
from .newsletter.runtime import get_provider

log = logging.getLogger("service.worker")

CHANNEL = WAKE_CHANNEL
EXPIRY_CHECK_SECONDS = 60.0


@dataclass
class PassReport:
    stripe: stripe_queue.QueueReport = field(default_factory=stripe_queue.QueueReport)
    newsletter_delivered: int = 0
    newsletter_retried: int = 0
    newsletter_failed: int = 0
    mail: mail_outbox.MailReport = field(default_factory=mail_outbox.MailReport)
    exports: int = 0
    recomputed: int = 0
    errors: list[str] = field(default_factory=list)

    @property
    def did_something(self) -> bool:
        return bool(self.stripe.touched or self.newsletter_delivered or self.newsletter_retried
                    or self.newsletter_failed or self.mail.touched or self.exports or self.recomputed)

    def words(self) -> str:
        s = self.stripe
        return (f"stripe events: applied {s.applied}, retrying {s.retried}, failed {s.failed}; "
                f"newsletter: delivered {self.newsletter_delivered}, retrying {self.newsletter_retried}, "
                f"failed {self.newsletter_failed}; mail: delivered {self.mail.delivered}, retrying "
                f"{self.mail.retried}, failed {self.mail.failed}; exports: {self.exports}")


def apply_stripe_events(batch: int, threads: int) -> stripe_queue.QueueReport:
    """The Stripe queue, applied by `threads` threads of this worker (PostgreSQL: while one
    waits on the database, another runs; they claim with SKIP LOCKED like separate workers)."""
    app = current_app._get_current_object()  # type: ignore[attr-defined]
    gateway = get_gateway()
    if get_engine().dialect.name != "postgresql":
        threads = 1  # SQLite has one writer at a time
    reports: list[stripe_queue.QueueReport] = []
    failures: list[SQLAlchemyError] = []

    def work() -> None:
        with app.app_context():
            session = queue_session()
            try:
                reports.append(stripe_queue.run_due(session, gateway, batch=batch))
            except SQLAlchemyError as exc:
                failures.append(exc)
            finally:
                session.close()

    helpers = [threading.Thread(target=work, name=f"stripe-queue-{n}", daemon=True) for n in range(1, threads)]
    for t in helpers:
        t.start()
    work()
    for t in helpers:
        t.join()
    total = stripe_queue.QueueReport()
    for r in reports:
        total.applied += r.applied
        total.retried += r.retried
        total.failed += r.failed
    if failures and not total.touched:
        raise failures[0]
    return total


def one_pass(batch: int = 100, threads: int = 1) -> PassReport:
    """Everything due right now, once. A queue whose database work fails (the database is
    restarting, say) is skipped for this pass; its rows stay claimable and nothing is lost."""
    report = PassReport()

    def stage(name: str, work: Callable[[], None]) -> None:
        try:
            work()
        except SQLAlchemyError as exc:
            report.errors.append(f"{name}: {exc.__class__.__name__}")
            log.error("worker: %s skipped this pass (database: %s)", name, exc.__class__.__name__)
        finally:
            close_session()

    def stripe_events() -> None:
        report.stripe = apply_stripe_events(batch, threads)

    def newsletter() -> None:
        sent = sync_once(get_session(), get_provider(), batch=batch)
        report.newsletter_delivered, report.newsletter_retried, report.newsletter_failed = (
            sent.delivered, sent.retried, sent.failed)

    def outgoing_mail() -> None:
        report.mail = mail_outbox.deliver_due(get_session(), batch=batch)

    def export_jobs() -> None:
        report.exports = exports.run_due(get_session())

    def ended_entitlements() -> None:
        # Grace periods and comps that ran out since the last look: at most once a minute.
        last = current_app.extensions.get("worker_last_expiry_check", 0.0)
        if time.monotonic() - last >= EXPIRY_CHECK_SECONDS:
            current_app.extensions["worker_last_expiry_check"] = time.monotonic()
            report.recomputed = recompute_ended(get_session())

    stage("stripe events", stripe_events)
    stage("ended entitlements", ended_entitlements)
    stage("newsletter", newsletter)
    stage("mail", outgoing_mail)
    stage("exports", export_jobs)
    return report


def run_until_idle(batch: int = 100, threads: int = 1) -> list[PassReport]:
    """`--once`: pass after pass until nothing is due (a pass can make more work due)."""
    reports = []
    while True:
        report = one_pass(batch, threads)
        reports.append(report)
        if not report.did_something:
            return reports


class Wakeup:
    """LISTEN on PostgreSQL: a NOTIFY from a committing webhook or change wakes the worker."""

    @classmethod
    def polling(cls) -> "Wakeup":
        wakeup = cls.__new__(cls)
        wakeup.conn = None
        return wakeup

    def __init__(self) -> None:
        self.conn = None
        engine = get_engine()
        if engine.dialect.name == "postgresql":
            import psycopg

            url = engine.url.set(drivername="postgresql").render_as_string(hide_password=False)
            self.conn = psycopg.connect(url, autocommit=True)
            self.conn.execute(f"LISTEN {CHANNEL}")

    def wait(self, seconds: float, stop: threading.Event) -> None:
        if self.conn is None:
            stop.wait(seconds)
            return
        ready, _, _ = select_module.select([self.conn.fileno()], [], [], seconds)
        if ready:
            for _ in self.conn.notifies(timeout=0):  # drain: one pass serves them all
                pass

    def close(self) -> None:
        if self.conn is not None:
            try:
                self.conn.close()
            except Exception:  # noqa: BLE001 - closing a dead connection
                pass
            self.conn = None


def run(*, once: bool, batch: int, echo: Callable[[str], None], threads: int = 1) -> None:
    if once:
        for report in run_until_idle(batch, threads):
            if report.did_something:
                echo(report.words())
        echo("worker: nothing more is due")
        return
    stop = threading.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda *_: stop.set())
    poll = current_app.config["WORKER_POLL_SECONDS"]
    wakeup = Wakeup()
    echo("worker: running (Ctrl-C or SIGTERM stops it)")
    try:
        while not stop.is_set():
            report = one_pass(batch, threads)
            if report.did_something:
                echo(report.words())
                continue
            try:
                wakeup.wait(poll, stop)
            except Exception:  # noqa: BLE001 - the listening connection died (a restart): poll instead
                log.warning("worker: lost the LISTEN connection; polling until it comes back")
                wakeup.close()
                stop.wait(poll)
                try:
                    wakeup = Wakeup()
                except Exception:  # noqa: BLE001
                    wakeup = Wakeup.polling()
    finally:
        wakeup.close()


def start_in_thread(app: Flask, stop: threading.Event) -> threading.Thread:
    """The embedded default runs the worker inside `make run`."""
    def loop() -> None:
        with app.app_context():
            poll = min(app.config["WORKER_POLL_SECONDS"], 1.0)
            while not stop.is_set():
                try:
                    report = one_pass()
                except Exception:  # noqa: BLE001 - keep the demo's worker alive; the next pass retries
                    log.exception("worker pass failed")
                    report = PassReport()
                if not report.did_something:
                    stop.wait(poll)

    thread = threading.Thread(target=loop, name="worker", daemon=True)
    thread.start()
    return thread


@click.command("worker")
@with_appcontext
@click.option("--once", is_flag=True, help="Do everything that is due, then exit.")
@click.option("--batch", default=100, show_default=True, type=click.IntRange(1, 1000), help="Rows claimed at a time.")
@click.option("--threads", default=None, type=click.IntRange(1, 16),
              help="Threads applying Stripe events (default WORKER_THREADS, 2; SQLite: 1).")
def worker(once: bool, batch: int, threads: int | None) -> None:
    """Apply Stripe events, deliver DAWNS Digest changes and mail, run exports (any number of copies)."""
    run(once=once, batch=batch, echo=click.echo, threads=threads or current_app.config["WORKER_THREADS"])
