"""Flask CLI commands (`flask --app wsgi ...`), the contract of SPEC.md."""
from __future__ import annotations

import sys

import click
from flask import Flask, current_app
from flask.cli import AppGroup

from .domain.membership import Role


def _read_password() -> str:
    if sys.stdin.isatty():
        return click.prompt("Password", hide_input=True, confirmation_prompt=True)
    password = sys.stdin.readline().rstrip("\n")
    if not password:
        raise click.UsageError("no password on standard input")
    return password


def init_app(app: Flask) -> None:
    db_group = AppGroup("db", help="Database migrations (Alembic).")

    @db_group.command("upgrade")
    @click.argument("revision", default="head")
    def db_upgrade(revision: str) -> None:
        """Apply migrations up to REVISION (default: head)."""
        from .migrate import upgrade

        upgrade(current_app.config["DATABASE_URL"], revision)
        click.echo(f"database at {revision}")

    app.cli.add_command(db_group)

    staff_group = AppGroup("staff", help="Staff accounts.")

    @staff_group.command("create")
    @click.argument("email")
    @click.option("--role", type=click.Choice(["staff", "admin"]), default="staff", show_default=True)
    @click.option("--name", default="", help="Display name (default: the part before @).")
    @click.option("--promote", is_flag=True, help="Allow turning an existing reader account into staff.")
    def staff_create(email: str, role: str, name: str, promote: bool) -> None:
        """Create a staff account, or reset its password and role. Password from stdin or prompt."""
        from .members.forms import MIN_PASSWORD
        from .members.services import NotStaff, create_staff

        password = _read_password()
        if len(password) < MIN_PASSWORD:
            raise click.UsageError(f"the password needs at least {MIN_PASSWORD} characters")
        try:
            account = create_staff(email, name or email.split("@")[0], password, Role(role), promote=promote)
        except NotStaff:
            raise click.ClickException(
                f"{email} is a reader account (anyone can register an address). Check who owns it, "
                "then run again with --promote; its password is reset and its sessions end."
            ) from None
        click.echo(f"{account.role.value} account {account.email} (id {account.id}) ready")

    @staff_group.command("expire-comps")
    def staff_expire_comps() -> None:
        """End complimentary memberships whose end date has passed (run from cron, e.g. hourly)."""
        from .staff.services import expire_comps

        ids = expire_comps()
        click.echo(f"expired {len(ids)} comp(s)" + (f": members {', '.join(map(str, ids))}" if ids else ""))

    app.cli.add_command(staff_group)

    paywall_group = AppGroup("paywall", help="Entitlement token keys.")

    @paywall_group.command("keygen")
    def paywall_keygen() -> None:
        """Print a new ES256 key pair (PEM) for PAYWALL_JWT_PRIVATE_KEY / key rotation."""
        from .paywall.keys import generate_pem

        private, public = generate_pem()
        click.echo(private + public)

    app.cli.add_command(paywall_group)

    stripe_group = AppGroup("stripe", help="Stripe maintenance.")

    @stripe_group.command("reconcile")
    def stripe_reconcile() -> None:
        """Pull every subscription from Stripe and repair drift (missed webhooks)."""
        from .billing.gateway import BillingError
        from .billing.reconcile import reconcile

        try:
            report = reconcile(echo=click.echo)
        except BillingError as exc:
            raise click.ClickException(f"Stripe: {exc.detail}") from None
        click.echo(f"checked {report.checked} subscriptions, changed {len(report.changes)}")

    app.cli.add_command(stripe_group)

    newsletter_group = AppGroup("newsletter", help="DAWNS Digest deliveries.")

    @newsletter_group.command("sync")
    @click.option("--watch", is_flag=True, help="Keep running, delivering changes as they fall due.")
    @click.option("--batch", default=50, show_default=True, help="Rows claimed at a time.")
    def newsletter_sync(watch: bool, batch: int) -> None:
        """Deliver the enrollment changes that are due (retries with backoff)."""
        from .newsletter.worker import run

        run(watch=watch, batch=batch, echo=click.echo)

    app.cli.add_command(newsletter_group)

    tokens_group = AppGroup("tokens", help="API tokens for other programs (the website's paywall).")

    @tokens_group.command("create")
    @click.argument("name")
    @click.option("--scope", "scopes", multiple=True, metavar="SCOPE",
                  help="entitlements:read, members:read, organisations:read or metrics:read; repeat for more "
                       "(default: entitlements:read).")
    def tokens_create(name: str, scopes: tuple[str, ...]) -> None:
        """Create a token and print it once (only its hash is stored)."""
        from .api.auth import DEFAULT_SCOPES
        from .api.tokens import TokenExists, TokenInvalid, create_token

        if not scopes:
            click.echo(f"no --scope given: the token gets {' '.join(DEFAULT_SCOPES)} only", err=True)
        try:
            token = create_token(name, scopes or DEFAULT_SCOPES)
        except TokenExists:
            raise click.ClickException(f"a token named {name!r} exists; revoke it or pick another name") from None
        except TokenInvalid as exc:
            raise click.ClickException(str(exc)) from None
        click.echo(token)

    @tokens_group.command("revoke")
    @click.argument("name")
    def tokens_revoke(name: str) -> None:
        """Revoke a token: it stops working at once."""
        from .api.tokens import revoke_token

        if revoke_token(name) is None:
            raise click.ClickException(f"no live token named {name!r}")
        click.echo(f"token {name} revoked")

    app.cli.add_command(tokens_group)

    @app.cli.command("demo")
    @click.option("--host", default="127.0.0.1", show_default=True)
    @click.option("--port", default=5000, show_default=True, type=int)
    def demo(host: str, port: int) -> None:
        """Serve the embedded default: localstripe stand-in (unless Stripe keys are set) and a demo staff login."""
        from .devserver import run_demo

        run_demo(host, port)

