"""`flask --app wsgi stripe ...`: Stripe maintenance."""
from __future__ import annotations

import click
from flask.cli import AppGroup

from .gateway import BillingError

stripe_group = AppGroup("stripe", help="Stripe maintenance.")


@stripe_group.command("reconcile")
def stripe_reconcile() -> None:
    """Pull every subscription from Stripe and repair drift (missed webhooks)."""
    from flask import current_app

    from .reconcile import reconcile

    if not current_app.config["STRIPE_SECRET_KEY"]:
        raise click.ClickException("STRIPE_SECRET_KEY is not set. For the embedded default, load the stand-in's "
                                   "settings first: set -a; . instance/demo-stripe.env; set +a")
    try:
        report = reconcile(echo=click.echo)
    except BillingError as exc:
        raise click.ClickException(f"Stripe: {exc.detail}") from None
    click.echo(f"checked {report.checked} subscriptions, changed {len(report.changes)}")


@stripe_group.command("events")
@click.option("--limit", default=50, show_default=True, type=click.IntRange(1, 1000))
def stripe_events(limit: int) -> None:
    """Stored Stripe events that failed or wait to be retried, newest first."""
    from ..db import get_session
    from .queue import troubled

    rows = troubled(get_session(), limit)
    for e in rows:
        click.echo(f"{e.stripe_id}\t{e.type}\t{e.status}\tattempts {e.attempts}\t"
                   f"received {e.received_at:%Y-%m-%d %H:%M}\t{e.last_error or ''}")
    click.echo(f"{len(rows)} event(s) failed or waiting to be retried")


@stripe_group.command("replay")
@click.argument("stripe_event_id")
def stripe_replay(stripe_event_id: str) -> None:
    """Put a failed event (evt_...) back in the queue; the worker applies it in order."""
    from ..db import get_session
    from ..models import AuditLog
    from .queue import requeue

    session = get_session()
    row = requeue(session, stripe_event_id.strip())
    if row is None:
        session.rollback()
        raise click.ClickException(f"{stripe_event_id} is not a failed Stripe event here (see `flask stripe events`)")
    session.add(AuditLog(actor_id=None, actor_email="cli", action="stripe_event_requeued",
                         target_account_id=row.account_id, details={"event": row.stripe_id, "type": row.type}))
    session.commit()
    click.echo(f"{row.stripe_id} ({row.type}) is queued again; the worker will apply it")
