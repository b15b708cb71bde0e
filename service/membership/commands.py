"""`flask --app wsgi levels ...`: the catalogue of membership levels."""
from __future__ import annotations

import click
from flask import current_app
from flask.cli import AppGroup

from ..db import get_session
from ..domain.money import format_amount
from . import catalogue

levels = AppGroup("levels", help="Membership levels ($5 a month, $50 a year, ...).")


def _book() -> catalogue.PriceBook:
    return current_app.extensions["billing_gateway"]  # the billing gateway has the two calls


def _fail(exc: Exception) -> click.ClickException:
    return click.ClickException(getattr(exc, "detail", None) or str(exc))


@levels.command("list")
def levels_list() -> None:
    """Every level, archived ones too."""
    session = get_session()
    try:
        catalogue.ensure(session, _book())
        session.commit()
    except Exception as exc:  # noqa: BLE001 - a Stripe or config problem is reported, the list still shows
        click.echo(f"(catalogue not refreshed from Stripe: {getattr(exc, 'detail', exc)})", err=True)
        session.rollback()
    rows = catalogue.levels(session)
    click.echo(f"{'id':>4}  {'name':<24} {'amount':>10}  {'interval':<8} {'price':<32} state")
    for level in rows:
        state = "archived" if level.archived else ("public" if level.public else "hidden")
        if level.organisation:
            state += ", organisation (per seat)"
        if level.default:
            state += ", default"
        click.echo(f"{level.id:>4}  {level.name:<24} {format_amount(level.amount, level.currency):>10}  "
                   f"{level.interval:<8} {level.stripe_price_id:<32} {state}")
    if not rows:
        click.echo("no levels yet: set STRIPE_PRICE_ID (it seeds the first) or add one")


@levels.command("add")
@click.argument("name")
@click.option("--amount", type=click.IntRange(min=100), required=True, help="Cents per interval (500 = $5).")
@click.option("--interval", type=click.Choice(["month", "year"]), required=True)
@click.option("--price", "price_id", default=None,
              help="An existing Stripe Price for it; without, a Price is created under the membership product.")
@click.option("--currency", default="usd", show_default=True)
@click.option("--hidden", is_flag=True, help="Not offered on /join (e.g. for staff-made subscriptions).")
@click.option("--organisation", is_flag=True,
              help="A yearly per-seat level that organisations buy (never on /join).")
def levels_add(name: str, amount: int, interval: str, price_id: str | None, currency: str, hidden: bool,
               organisation: bool) -> None:
    """Add a level to the catalogue."""
    session = get_session()
    try:
        catalogue.ensure(session, _book())
        level = catalogue.add(session, _book(), name=name, amount=amount, interval=interval, price_id=price_id,
                              currency=currency, public=not hidden, organisation=organisation)
        session.commit()
    except Exception as exc:  # CatalogueError or BillingError: both say what went wrong
        session.rollback()
        raise _fail(exc) from None
    click.echo(f"level {level.id} {level.name}: {format_amount(level.amount, level.currency)} a {level.interval}, "
               f"price {level.stripe_price_id}")


@levels.command("archive")
@click.argument("level_id", type=int)
def levels_archive(level_id: int) -> None:
    """Offer a level to no one from now on (its payers keep their membership)."""
    session = get_session()
    try:
        level = catalogue.archive(session, level_id)
        session.commit()
    except catalogue.CatalogueError as exc:
        raise _fail(exc) from None
    click.echo(f"level {level.id} {level.name} archived; members paying it keep their membership")
