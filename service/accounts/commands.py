"""`flask --app wsgi tokens ...`: API tokens for other programs (the website's paywall)."""
from __future__ import annotations

import click
from flask.cli import AppGroup

from . import api_tokens

tokens = AppGroup("tokens", help="API tokens for other programs (the website's paywall).")


@tokens.command("create")
@click.argument("name")
@click.option("--scope", "scopes", multiple=True, metavar="SCOPE",
              help="entitlements:read, members:read, organisations:read or metrics:read; repeat for more "
                   "(default: entitlements:read).")
def tokens_create(name: str, scopes: tuple[str, ...]) -> None:
    """Create a token and print it once (only its hash is stored)."""
    try:
        api_tokens.check_name(name)
    except api_tokens.TokenInvalid as exc:
        raise click.ClickException(str(exc)) from None
    if not scopes:
        click.echo(f"no --scope given: the token gets {' '.join(api_tokens.DEFAULT_SCOPES)} only", err=True)
    try:
        token = api_tokens.create_token(name, scopes or api_tokens.DEFAULT_SCOPES)
    except api_tokens.TokenExists:
        raise click.ClickException(f"a token named {name!r} exists; revoke it or pick another name") from None
    except api_tokens.TokenInvalid as exc:
        raise click.ClickException(str(exc)) from None
    click.echo(token)


@tokens.command("list")
def tokens_list() -> None:
    """Every token: name, scopes, created, last used, revoked (never the token itself)."""
    rows = api_tokens.list_tokens()
    for t in rows:
        used = t.last_used_at.strftime("%Y-%m-%d %H:%M") if t.last_used_at else "never"
        state = f"revoked {t.revoked_at:%Y-%m-%d}" if t.revoked_at else "live"
        click.echo(f"{t.id:>4}  {t.name:<30} {t.scopes:<40} created {t.created_at:%Y-%m-%d}  used {used}  {state}")
    if not rows:
        click.echo("no tokens")


@tokens.command("revoke")
@click.argument("name")
def tokens_revoke(name: str) -> None:
    """Revoke a token: at once on every route; the paywall check may trust it API_TOKEN_CACHE_SECONDS longer."""
    if api_tokens.revoke_token(name) is None:
        raise click.ClickException(f"no live token named {name!r}")
    click.echo(f"token {name} revoked")
