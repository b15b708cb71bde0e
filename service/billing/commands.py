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
