"""The membership rules, in one pure function: `derive(parts) -> Derived`.

A membership is derived from its parts (the member's Stripe subscriptions with their prices,
the catalogue of levels, a staff comp, the time) and nothing else keeps its own copy of these
rules. Whether a derived membership entitles is decided at the moment of the read
(`entitled`), so a grace period or a comp that ends needs no job to take effect. This module
imports neither Flask, nor SQLAlchemy, nor Stripe: billing turns Stripe objects into the
`Subscription` parts, the membership service loads the rest from the database.
"""
from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from enum import StrEnum


class MembershipStatus(StrEnum):
    PENDING = "pending"
    ACTIVE = "active"
    PAST_DUE = "past_due"
    PAUSED = "paused"
    LAPSED = "lapsed"
    CANCELED = "canceled"
    COMPED = "comped"
    # Entitled only through a seat in an organisation that entitles (SPEC "Organisations").
    ORGANISATION = "organisation"


class Role(StrEnum):
    MEMBER = "member"
    STAFF = "staff"
    ADMIN = "admin"


class Interval(StrEnum):
    MONTH = "month"
    YEAR = "year"


class Via(StrEnum):
    """What entitles a member: their own paid membership, a staff comp, or a seat."""

    MEMBERSHIP = "membership"
    COMP = "comp"
    ORGANISATION = "organisation"


class Until(StrEnum):
    """How long a state entitles, counted at the moment of the read."""

    ALWAYS = "always"
    PAID_THROUGH = "paid_through"              # until `paid_through` (a comp's end), or forever without one
    PAID_THROUGH_AND_GRACE = "paid_through_and_grace"  # until `paid_through` + the grace period
    NEVER = "never"


# The one table of entitlement: `entitled` below and the SQL filter of the staff console and the
# paywall are both built from it.
ENTITLEMENT: dict[MembershipStatus, Until] = {
    MembershipStatus.PENDING: Until.NEVER,
    MembershipStatus.ACTIVE: Until.ALWAYS,
    MembershipStatus.PAST_DUE: Until.PAID_THROUGH_AND_GRACE,
    MembershipStatus.PAUSED: Until.NEVER,
    MembershipStatus.LAPSED: Until.NEVER,
    MembershipStatus.CANCELED: Until.NEVER,
    MembershipStatus.COMPED: Until.PAID_THROUGH,
    # A seat entitles while its organisation does: `paid_through` holds the end of that (the
    # organisation's grace, trial or comp end), or nothing while its subscription is active.
    MembershipStatus.ORGANISATION: Until.PAID_THROUGH,
}

# Stripe subscription statuses (https://docs.stripe.com/api/subscriptions/object#subscription_object-status)
# mapped to the spec's membership states.
STRIPE_STATUS_TO_MEMBERSHIP: dict[str, MembershipStatus] = {
    "incomplete": MembershipStatus.PENDING,
    "active": MembershipStatus.ACTIVE,
    "trialing": MembershipStatus.ACTIVE,
    "past_due": MembershipStatus.PAST_DUE,
    "paused": MembershipStatus.PAUSED,
    "unpaid": MembershipStatus.LAPSED,
    "canceled": MembershipStatus.CANCELED,
    "incomplete_expired": MembershipStatus.CANCELED,
}

# States that a paid subscription holds while it is being paid for (or retried).
PAYING = frozenset({MembershipStatus.ACTIVE, MembershipStatus.PAST_DUE})
# States in which the member's subscription still exists in Stripe: a second one would charge
# twice, so these are settled in "Manage billing", never with a new Checkout.
HELD = PAYING | {MembershipStatus.PAUSED, MembershipStatus.LAPSED}

def N_(text: str) -> str:
    """Marks a reader-facing text for the catalogue (`make messages`); translated where shown."""
    return text


# What the reader is offered to (re)start a membership, by state; none while one is held.
START_WORDS: dict[MembershipStatus, str] = {
    MembershipStatus.PENDING: N_("Complete your membership"),
    MembershipStatus.CANCELED: N_("Rejoin"),
    MembershipStatus.COMPED: N_("Become a paying member"),
}

STATUS_WORDS: dict[MembershipStatus, str] = {
    MembershipStatus.PENDING: N_("Not yet active: we have not received a payment for this membership."),
    MembershipStatus.ACTIVE: N_("Active: thank you for supporting independent journalism."),
    MembershipStatus.PAST_DUE: N_("Active, but the last payment failed. Stripe is retrying; please check your card."),
    MembershipStatus.PAUSED: N_("Paused: your membership is on hold."),
    MembershipStatus.LAPSED: N_("Lapsed: payments failed and the membership is no longer active."),
    MembershipStatus.CANCELED: N_("Canceled: you are no longer a member."),
    MembershipStatus.COMPED: N_("Complimentary membership granted by our staff."),
    MembershipStatus.ORGANISATION: N_("Active through your organisation's membership."),
}

CUSTOM_LEVEL_NAME = "Give more"


def membership_status_for_stripe(stripe_status: str) -> MembershipStatus:
    try:
        return STRIPE_STATUS_TO_MEMBERSHIP[stripe_status]
    except KeyError:
        raise ValueError(f"unknown Stripe subscription status {stripe_status!r}") from None


def _state_entitles(status: MembershipStatus, paid_through: datetime | None, now: datetime,
                    grace: timedelta) -> bool:
    until = ENTITLEMENT[status]
    if until is Until.ALWAYS:
        return True
    if until is Until.NEVER:
        return False
    if paid_through is None:
        return True
    if until is Until.PAID_THROUGH_AND_GRACE:
        return now < paid_through + grace
    return now < paid_through


def standing(status: MembershipStatus | str, paid_through: datetime | None, now: datetime, grace: timedelta,
             comp: "Comp | None" = None) -> tuple[bool, "Via | None"]:
    """Entitled at `now`, and through what: the read-time rule, for every reader of it.

    A staff comp is a floor: when the stored state stops entitling (a grace period runs out
    between two events), a comp that is still live keeps the member entitled."""
    status = MembershipStatus(status)
    if _state_entitles(status, paid_through, now, grace):
        return True, _VIA.get(status, Via.MEMBERSHIP)
    if comp is not None and comp.active(now):
        return True, Via.COMP
    return False, None


_VIA = {MembershipStatus.COMPED: Via.COMP, MembershipStatus.ORGANISATION: Via.ORGANISATION}


def entitled(status: MembershipStatus | str, paid_through: datetime | None, now: datetime,
             grace: timedelta, comp: "Comp | None" = None) -> bool:
    return standing(status, paid_through, now, grace, comp)[0]


# A paying membership cancelled at the end of its period: still active, but not renewing.
ENDING_WORDS = N_("Active until the date below, then it ends: your membership will not renew.")


def describe(status: MembershipStatus | str, ending: bool = False) -> str:
    status = MembershipStatus(status)
    return ENDING_WORDS if ending and status in PAYING else STATUS_WORDS[status]


def paid_through_label(status: MembershipStatus | str, ends: bool) -> str:
    """How the paid-through date reads for this state."""
    status = MembershipStatus(status)
    if status in (MembershipStatus.CANCELED, MembershipStatus.LAPSED, MembershipStatus.PAUSED):
        return N_("Paid through")
    if ends:
        return N_("Ends on")
    if status == MembershipStatus.COMPED:
        return N_("Complimentary until")
    if status == MembershipStatus.ORGANISATION:
        return N_("Through your organisation until")
    return N_("Renews on")


# --- the parts -----------------------------------------------------------------------------------

@dataclass(frozen=True)
class Price:
    """One subscription item's price, as Stripe described it."""

    id: str | None
    product_id: str | None = None
    amount: int | None = None          # cents per interval, per seat
    currency: str = "usd"
    interval: Interval | None = None
    quantity: int = 1


@dataclass(frozen=True)
class Level:
    """What a member pays, as shown anywhere: "$10 a month"."""

    name: str
    amount: int
    currency: str
    interval: Interval

    @property
    def monthly_value(self) -> int:
        """Cents per month: a yearly amount is spread over twelve months."""
        return self.amount if self.interval == Interval.MONTH else round(self.amount / 12)


@dataclass(frozen=True)
class Catalogue:
    """The membership product and every price that is, or ever was, a catalogue level's."""

    product_id: str | None
    levels_by_price: Mapping[str, Level] = field(default_factory=dict)

    def counts(self, price: Price) -> bool:
        """A price counts for membership when it is or was in the catalogue, or belongs to the
        membership product (a "give more" amount, a price made in the Dashboard). Another
        product (a donation, a shop item) never counts."""
        if price.id is not None and price.id in self.levels_by_price:
            return True
        return self.product_id is not None and price.product_id == self.product_id

    def level_for(self, price: Price) -> Level | None:
        known = self.levels_by_price.get(price.id or "")
        if known is not None:
            return known
        if price.amount is None or price.interval is None:
            return None
        return Level(CUSTOM_LEVEL_NAME, price.amount, price.currency, price.interval)


@dataclass(frozen=True)
class Subscription:
    id: str
    stripe_status: str
    prices: Sequence[Price]
    current_period_end: datetime | None = None
    cancel_at_period_end: bool = False
    cancel_at: datetime | None = None
    ended_at: datetime | None = None
    created_at: datetime | None = None
    customer_deleted: bool = False
    current_period_start: datetime | None = None

    @property
    def status(self) -> MembershipStatus:
        if self.customer_deleted:
            return MembershipStatus.CANCELED
        return membership_status_for_stripe(self.stripe_status)


@dataclass(frozen=True)
class Comp:
    granted: bool = False
    until: datetime | None = None

    def active(self, now: datetime) -> bool:
        return self.granted and (self.until is None or now < self.until)


@dataclass(frozen=True)
class SeatSource:
    """A live seat of the member's in an organisation, with how long that organisation
    entitles (`until`: None while its subscription is active; see `seat_window`)."""

    organisation_id: int
    name: str
    slug: str
    until: datetime | None = None


@dataclass(frozen=True)
class Parts:
    subscriptions: Sequence[Subscription]
    catalogue: Catalogue
    now: datetime
    grace: timedelta
    comp: Comp = Comp()
    # Seats whose organisation entitles at `now` (the membership service asks `seat_window`).
    seats: Sequence[SeatSource] = ()


@dataclass(frozen=True)
class Derived:
    status: MembershipStatus
    paid_through: datetime | None = None
    cancel_at_period_end: bool = False
    subscription_id: str | None = None
    level: Level | None = None
    paying_twice: bool = False
    comp: Comp = Comp()
    organisation: SeatSource | None = None

    def standing(self, now: datetime, grace: timedelta) -> tuple[bool, Via | None]:
        return standing(self.status, self.paid_through, now, grace, self.comp)

    def entitled(self, now: datetime, grace: timedelta) -> bool:
        return self.standing(now, grace)[0]


def derive(parts: Parts) -> Derived:
    """The member's membership from its parts.

    - Only subscriptions whose prices count for membership are considered.
    - A paying subscription (active, or past due within its grace) decides; among several the
      newest started; two paying ones at once flag the member ("paying twice").
    - Otherwise a live comp holds (it ends on its own end date); otherwise a seat in an
      organisation that entitles (state `organisation`, until that organisation stops
      entitling); otherwise the newest subscription's state; otherwise the member is pending.
      A reader's own paid membership always takes precedence over a seat.
    """
    now, grace = parts.now, parts.grace
    counted = [s for s in parts.subscriptions if any(parts.catalogue.counts(p) for p in s.prices)]

    def paying(s: Subscription) -> bool:
        return s.status in PAYING and _sub_entitles(s, now, grace)

    payers = [s for s in counted if paying(s)]
    current = max(counted, key=lambda s: (paying(s), s.created_at or datetime.min.replace(tzinfo=now.tzinfo), s.id),
                  default=None)
    comp_on = parts.comp.active(now)
    seat = _best_seat(parts.seats, now)
    if current is not None and (paying(current) or not (comp_on or seat)):
        ends = (current.cancel_at_period_end or current.cancel_at is not None) and not current.customer_deleted
        price = next(p for p in current.prices if parts.catalogue.counts(p))
        return Derived(
            status=current.status,
            paid_through=paid_through(current),
            cancel_at_period_end=ends,
            subscription_id=current.id,
            level=parts.catalogue.level_for(price) if current.status != MembershipStatus.PENDING else None,
            paying_twice=len(payers) > 1,
            comp=parts.comp,
        )
    if comp_on:
        return Derived(MembershipStatus.COMPED, paid_through=parts.comp.until, comp=parts.comp)
    if seat is not None:
        return Derived(MembershipStatus.ORGANISATION, paid_through=seat.until, comp=parts.comp, organisation=seat)
    return Derived(MembershipStatus.PENDING, comp=parts.comp)


def _best_seat(seats: Sequence[SeatSource], now: datetime) -> SeatSource | None:
    """Of the member's seats that entitle now, the one that lasts longest (an open-ended one
    first), then the oldest organisation."""
    live = [s for s in seats if s.until is None or now < s.until]
    if not live:
        return None
    return min(live, key=lambda s: (s.until is not None, -(s.until.timestamp()) if s.until else 0.0,
                                    s.organisation_id))


def seat_window(status: MembershipStatus | str, paid_through: datetime | None, now: datetime,
                grace: timedelta, comp: Comp = Comp()) -> tuple[bool, datetime | None]:
    """Whether an organisation in this derived state entitles its seats at `now`, and until
    when (None: open-ended, while its subscription is active). The grace rules are a
    member's: past due entitles until the paid time plus the grace; a comp (a staff comp, or
    the trial of an organisation that pays by invoice) until its end."""
    status = MembershipStatus(status)
    live, _via = standing(status, paid_through, now, grace, comp)
    if not live:
        return False, None
    if status == MembershipStatus.ACTIVE:
        return True, None
    if status == MembershipStatus.PAST_DUE and paid_through is not None:
        return True, paid_through + grace
    if status == MembershipStatus.COMPED or comp.active(now):
        return True, comp.until
    return True, paid_through


# States whose subscription is behind on payment: the last paid period ended when the current
# (invoiced, unpaid) one began. Stripe moves the period forward at renewal, before charging:
# https://docs.stripe.com/billing/subscriptions/overview#subscription-statuses
UNPAID_PERIOD = frozenset({MembershipStatus.PAST_DUE, MembershipStatus.LAPSED, MembershipStatus.PAUSED})


def paid_through(s: Subscription) -> datetime | None:
    """How far the subscription is paid: the period's end; for a subscription behind on payment,
    the start of the unpaid period; never past a cancel date or the day it ended."""
    period = s.current_period_start if s.status in UNPAID_PERIOD and s.current_period_start else s.current_period_end
    ends_at = [d for d in (period, s.cancel_at, s.ended_at) if d is not None]
    return min(ends_at) if ends_at else None


def _sub_entitles(s: Subscription, now: datetime, grace: timedelta) -> bool:
    return _state_entitles(s.status, paid_through(s), now, grace)
