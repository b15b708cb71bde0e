"""The catalogue of levels ($5 a month, $50 a year, ...) and the membership product.

Every Stripe Price a level ever had is kept (`level_prices`), so raising a price, archiving a
level or changing `STRIPE_PRICE_ID` never takes access from someone paying an older price. A
subscription counts for membership when one of its prices is, or was, in the catalogue, or
belongs to the membership product (`STRIPE_PRODUCT_ID`, else read once from Stripe from the
product of `STRIPE_PRICE_ID` and kept).
"""
from __future__ import annotations

import logging
import time
from dataclasses import dataclass
from typing import Any, Protocol

from flask import current_app
from sqlalchemy import func, select, update
from sqlalchemy.orm import Session

from ..domain.membership import N_, Catalogue, Interval, Level as Terms
from ..models import Level, LevelPrice, ServiceSetting

log = logging.getLogger("service.membership")

PRODUCT_SETTING = "membership_product_id"
# What STRIPE_PRICE_ID seeds when the catalogue is empty (SPEC "Levels": the $5/month level).
SEED_NAME = N_("Member")  # the default names read in the reader's language (N_)


class PriceBook(Protocol):
    """The two Stripe calls the catalogue needs (the billing gateway has them)."""

    def retrieve_price(self, price_id: str) -> dict[str, Any]: ...
    def create_price(self, *, product_id: str, amount: int, currency: str, interval: str) -> dict[str, Any]: ...


class CatalogueError(ValueError):
    """A level that cannot be made; the message says why."""


@dataclass(frozen=True)
class PriceFacts:
    id: str
    product_id: str | None
    amount: int
    currency: str
    interval: Interval


def price_facts(price: dict[str, Any]) -> PriceFacts:
    """A Price (https://docs.stripe.com/api/prices/object) or, from older APIs and localstripe,
    a Plan (`amount`, `interval` at the top)."""
    recurring = price.get("recurring") or {}
    interval = recurring.get("interval") or price.get("interval")
    amount = price.get("unit_amount", price.get("amount"))
    every = recurring.get("interval_count", price.get("interval_count", 1))
    usage = recurring.get("usage_type", price.get("usage_type", "licensed"))
    if interval not in ("month", "year") or amount is None or every != 1 or usage != "licensed" \
            or price.get("type", "recurring") != "recurring":
        raise CatalogueError(f"Price {price.get('id')} is not a flat monthly or yearly recurring price "
                             "(every 1 month or 1 year, licensed).")
    if price.get("active") is False:
        raise CatalogueError(f"Price {price.get('id')} is archived in Stripe.")
    product = price.get("product")
    if isinstance(product, dict):
        product = product.get("id")
    return PriceFacts(str(price["id"]), product, int(amount), str(price.get("currency") or "usd").lower(),
                      Interval(interval))


def _setting(session: Session, key: str) -> str | None:
    return session.scalar(select(ServiceSetting.value).where(ServiceSetting.key == key))


def membership_product_id(session: Session) -> str | None:
    return current_app.config.get("STRIPE_PRODUCT_ID") or _setting(session, PRODUCT_SETTING)


def current(session: Session) -> Catalogue:
    """`read`, remembered for CATALOGUE_CACHE_SECONDS in this process (it changes rarely and is
    needed for every recompute); changes made in this process are seen at once."""
    seconds = current_app.config.get("CATALOGUE_CACHE_SECONDS", 0)
    cache = current_app.extensions.setdefault("catalogue_cache", {})
    hit = cache.get("value")
    if seconds > 0 and hit is not None and time.monotonic() - hit[0] < seconds:
        return hit[1]
    value = read(session)
    cache["value"] = (time.monotonic(), value)
    return value


def forget() -> None:
    """The catalogue changed here: the next `current` reads it again."""
    current_app.extensions.get("catalogue_cache", {}).pop("value", None)


def read(session: Session) -> Catalogue:
    """What counts for membership now: every price any level ever had, and the product.

    Until `ensure` has read it from Stripe, `STRIPE_PRICE_ID` counts as the $5/month level, so
    that no member is ever judged against a catalogue that does not know their price yet."""
    rows = session.execute(select(LevelPrice.stripe_price_id, Level.name, LevelPrice.amount, LevelPrice.currency,
                                  LevelPrice.interval).join(Level, Level.id == LevelPrice.level_id)).all()
    levels = {price: Terms(name, amount, currency, Interval(interval)) for price, name, amount, currency, interval in rows}
    configured = current_app.config.get("STRIPE_PRICE_ID")
    if configured and configured not in levels:
        levels[configured] = Terms(SEED_NAME, 500, "usd", Interval.MONTH)
    return Catalogue(membership_product_id(session), levels)


def _known(session: Session, price_id: str) -> bool:
    return session.scalar(select(LevelPrice.id).where(LevelPrice.stripe_price_id == price_id)) is not None


def ensure(session: Session, book: PriceBook) -> None:
    """Seed and keep the catalogue in step with the configuration (the caller commits).

    - An empty catalogue gets the level of `STRIPE_PRICE_ID`, read from Stripe.
    - A `STRIPE_PRICE_ID` the catalogue has never seen (the usual way to raise a price) becomes
      the default level's price; the old one stays, so its payers keep their membership.
    - Without `STRIPE_PRODUCT_ID`, the product of `STRIPE_PRICE_ID` is read once and kept.
    """
    configured = current_app.config.get("STRIPE_PRICE_ID")
    if not configured:
        return
    if _known(session, configured) and membership_product_id(session):
        return
    facts = price_facts(book.retrieve_price(configured))
    product = current_app.config.get("STRIPE_PRODUCT_ID")
    if product and facts.product_id != product:
        raise CatalogueError(f"STRIPE_PRICE_ID {configured} is a price of {facts.product_id}, not of the membership "
                             f"product STRIPE_PRODUCT_ID {product}.")
    if not _known(session, configured):
        # The level it prices: the default one, if it is still offered and of the same interval.
        default = session.scalars(select(Level).where(Level.default.is_(True), Level.archived.is_(False),
                                                      Level.interval == facts.interval.value)).first()
        if default is None and session.scalar(select(func.count(Level.id))):
            session.execute(update(Level).values(default=False))
            default = Level(name=SEED_NAME, amount=facts.amount, currency=facts.currency,
                            interval=facts.interval.value, stripe_price_id=facts.id, public=True,
                            position=(session.scalar(select(func.max(Level.position))) or 0) + 1, default=True)
            session.add(default)
            session.flush()
            log.info("STRIPE_PRICE_ID %s starts a new default level %s", configured, default.id)
        elif default is None:
            default = Level(name=SEED_NAME, amount=facts.amount, currency=facts.currency,
                            interval=facts.interval.value, stripe_price_id=facts.id, public=True, position=0,
                            default=True)
            session.add(default)
            session.flush()
            log.info("catalogue seeded from STRIPE_PRICE_ID %s", configured)
        else:
            log.info("STRIPE_PRICE_ID %s is now the price of level %s (was %s)", configured, default.id,
                     default.stripe_price_id)
            default.stripe_price_id, default.amount = facts.id, facts.amount
            default.currency, default.interval, default.default = facts.currency, facts.interval.value, True
        session.add(LevelPrice(stripe_price_id=facts.id, level_id=default.id, product_id=facts.product_id,
                               amount=facts.amount, currency=facts.currency, interval=facts.interval.value))
    if not membership_product_id(session) and facts.product_id:
        session.merge(ServiceSetting(key=PRODUCT_SETTING, value=facts.product_id))
    forget()


RETRY_SECONDS = 60


def ensure_once(session: Session, book: PriceBook) -> None:
    """`ensure`, at most once per process and configuration (it is a database read otherwise).

    When the price book cannot be read (Stripe unreachable), the error goes to the caller, and
    for RETRY_SECONDS nobody asks again: every page and worker pass would otherwise wait for a
    timeout. The catalogue as it stands judges meanwhile."""
    done = current_app.extensions.setdefault("catalogue_ensured", set())
    key = (current_app.config.get("STRIPE_PRICE_ID"), current_app.config.get("STRIPE_PRODUCT_ID"))
    if key in done or time.monotonic() < current_app.extensions.get("catalogue_retry_at", 0.0):
        return
    try:
        ensure(session, book)
    except CatalogueError as exc:
        # A configuration mistake must not stop memberships: the catalogue as it stands (with
        # STRIPE_PRICE_ID counting as the $5/month level) still judges every member.
        session.rollback()
        log.error("catalogue not refreshed from STRIPE_PRICE_ID: %s", exc)
    except Exception:
        current_app.extensions["catalogue_retry_at"] = time.monotonic() + RETRY_SECONDS
        raise
    done.add(key)


def levels(session: Session, *, public_only: bool = False, include_archived: bool = True) -> list[Level]:
    stmt = select(Level).order_by(Level.position, Level.amount, Level.id)
    if public_only:
        stmt = stmt.where(Level.public.is_(True), Level.archived.is_(False), Level.organisation.is_(False))
    elif not include_archived:
        stmt = stmt.where(Level.archived.is_(False))
    return list(session.scalars(stmt))


def joinable(session: Session) -> list[Level]:
    """The public levels, as /join offers them."""
    return levels(session, public_only=True)


def minimum(session: Session, interval: Interval) -> int | None:
    """The smallest public amount of an interval: "give more" starts there."""
    return session.scalar(select(func.min(Level.amount)).where(
        Level.public.is_(True), Level.archived.is_(False), Level.organisation.is_(False),
        Level.interval == interval.value))


def organisation_levels(session: Session) -> list[Level]:
    """The per-seat levels organisations can buy (yearly, never on /join), cheapest first."""
    return list(session.scalars(select(Level).where(Level.organisation.is_(True), Level.archived.is_(False))
                                .order_by(Level.position, Level.amount, Level.id)))


def organisation_price_ids(session: Session) -> set[str]:
    """Every price that is or was an organisation level's: a subscription to one pays for seats."""
    return set(session.scalars(select(LevelPrice.stripe_price_id).join(Level, Level.id == LevelPrice.level_id)
                               .where(Level.organisation.is_(True))))


def organisation_level(session: Session) -> Level | None:
    """The level /organisations/join sells: the first live organisation level."""
    found = organisation_levels(session)
    return found[0] if found else None


def add(session: Session, book: PriceBook, *, name: str, amount: int, interval: Interval | str,
        price_id: str | None = None, currency: str = "usd", public: bool = True,
        organisation: bool = False) -> Level:
    """A new level: with `price_id`, that existing Price (it must match); without, a new Price
    is created under the membership product through the gateway. The caller commits.

    `organisation`: a yearly per-seat level for organisations, never offered on /join."""
    name = (name or "").strip()
    interval = Interval(interval)
    if organisation:
        if interval != Interval.YEAR:
            raise CatalogueError("An organisation level is yearly (a price per seat per year).")
        public = False
    if not name or len(name) > 100:
        raise CatalogueError("A level needs a name of at most 100 characters.")
    if amount < 100:
        raise CatalogueError("A level costs at least 100 cents.")
    if price_id:
        if _known(session, price_id):
            raise CatalogueError(f"Price {price_id} is already in the catalogue.")
        facts = price_facts(book.retrieve_price(price_id))
        product = membership_product_id(session)
        if product and facts.product_id != product:
            raise CatalogueError(f"Price {price_id} belongs to {facts.product_id}, not to the membership product "
                                 f"{product}: only membership prices can be levels.")
        if (facts.amount, facts.interval, facts.currency) != (amount, interval, currency.lower()):
            raise CatalogueError(f"Price {price_id} is {facts.amount} {facts.currency} per {facts.interval.value}, "
                                 f"not {amount} {currency.lower()} per {interval.value}.")
    else:
        product = membership_product_id(session)
        if not product:
            raise CatalogueError("The membership product is unknown: set STRIPE_PRODUCT_ID or STRIPE_PRICE_ID.")
        facts = price_facts(book.create_price(product_id=product, amount=amount, currency=currency.lower(),
                                              interval=interval.value))
    position = (session.scalar(select(func.max(Level.position))) or 0) + 1
    level = Level(name=name, amount=facts.amount, currency=facts.currency, interval=facts.interval.value,
                  stripe_price_id=facts.id, public=public, position=position, organisation=organisation)
    session.add(level)
    session.flush()
    session.add(LevelPrice(stripe_price_id=facts.id, level_id=level.id, product_id=facts.product_id,
                           amount=facts.amount, currency=facts.currency, interval=facts.interval.value))
    forget()
    return level


def archive(session: Session, level_id: int, archived: bool = True) -> Level:
    """An archived level is offered to no one; its payers keep their membership."""
    level = session.get(Level, level_id)
    if level is None:
        raise CatalogueError(f"No level with id {level_id}.")
    level.archived = archived
    if archived:
        level.default = False
    forget()
    return level
