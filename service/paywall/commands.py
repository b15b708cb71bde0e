"""`flask --app wsgi paywall ...`: entitlement token keys."""
from __future__ import annotations

import click
from flask.cli import AppGroup

paywall = AppGroup("paywall", help="Entitlement token keys.")


@paywall.command("keygen")
def paywall_keygen() -> None:
    """Print a new ES256 key pair (PEM) for PAYWALL_JWT_PRIVATE_KEY / key rotation."""
    from .keys import generate_pem

    private, public = generate_pem()
    click.echo(private + public)
