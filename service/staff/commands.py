"""`flask --app wsgi staff ...`: staff accounts, and comp housekeeping."""
from __future__ import annotations

import sys

import click
from flask.cli import AppGroup

from ..accounts.services import MIN_PASSWORD, NotStaff, create_staff
from ..domain.membership import Role

staff = AppGroup("staff", help="Staff accounts.")


def read_password() -> str:
    if sys.stdin.isatty():
        return click.prompt("Password", hide_input=True, confirmation_prompt=True)
    password = sys.stdin.readline().rstrip("\n")
    if not password:
        raise click.UsageError("no password on standard input")
    return password


@staff.command("create")
@click.argument("email")
@click.option("--role", type=click.Choice(["staff", "admin"]), default="staff", show_default=True)
@click.option("--name", default="", help="Display name (default: the part before @).")
@click.option("--promote", is_flag=True, help="Allow turning an existing reader account into staff.")
def staff_create(email: str, role: str, name: str, promote: bool) -> None:
    """Create a staff account, or reset its password and role. Password from stdin or prompt."""
    password = read_password()
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


@staff.command("expire-comps")
def staff_expire_comps() -> None:
    """Housekeeping: close comps whose end date has passed (they stop entitling on their own), and
    organisations' comps and unpaid invoice trials that have ended."""
    from .services import expire_comps, expire_organisation_comps

    ids = expire_comps()
    click.echo(f"expired {len(ids)} comp(s)" + (f": members {', '.join(map(str, ids))}" if ids else ""))
    orgs = expire_organisation_comps()
    if orgs:
        click.echo(f"recomputed {len(orgs)} organisation(s) whose comp or trial ended: {', '.join(map(str, orgs))}")
