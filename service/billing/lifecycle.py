"""Applying Stripe's truth to memberships, in any order, from any number of workers.

Design (SPEC "Stripe rules"): every stored subscription row remembers the Stripe time of the
snapshot it holds (`snapshot_at`): an event's `created`, or the `Date` of a read from the API.
Under a row lock (`SELECT ... FOR UPDATE` on PostgreSQL; SQLite serialises writers):

- a snapshot newer than the stored one is applied;
- an older one is ignored (it is history, not truth);
- a tie (same second: Stripe often emits `created` and `updated` together) is settled by
  reading the subscription from Stripe through the gateway, under the same lock.

So any permutation of a subscription's events, with duplicates, ends in the newest truth. The
success page, the checkout webhook, invoice events and `stripe reconcile` read the
subscription from Stripe (lock first, then read), which is always at least as new as anything
stored. Lock order is always subscription, then customer, then membership.
"""
from __future__ import annotations

import functools
import logging
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from typing import Any

from sqlalchemy import bindparam, select, update
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.orm import Session

from ..db import write_now
from ..domain.membership import MembershipStatus, Role
from ..membership.organisations import lock as lock_organisation, recompute_organisation
from ..membership.service import flag, membership_for, recompute
from ..membership import history
from ..models import NEVER_READ, Account, Membership, Organisation, StripeCustomer, StripeEvent, StripeSubscription
from .gateway import BillingGateway
from .snapshots import SubscriptionSnapshot, snapshot_from_subscription

log = logging.getLogger("service.billing")

@dataclass
class Applied:
    """What applying one piece of Stripe truth did."""

    subscription: StripeSubscription
    account: Account | None
    how: str  # "applied" | "stale" | "refetched" | "unchanged"
    before: MembershipStatus | None = None
    after: MembershipStatus | None = None
    # The subscription's (status, period end, cancel flag) before and after, for reports.
    sub_before: tuple | None = None
    sub_after: tuple | None = None
    # The organisation whose seats this subscription pays for (then `account` is None).
    organisation: Organisation | None = None


def _get_or_create(session: Session, model: type, lookup: dict[str, Any], defaults: dict[str, Any],
                   probably_missing: bool = False, report: bool = False):
    """Race-safe get-or-create on a unique column; the row comes back locked.

    A missing row costs one INSERT ... ON CONFLICT DO NOTHING RETURNING (no savepoint): when
    another worker inserted it first, the insert waits for their commit, returns nothing, and
    their row is read under the lock. `probably_missing` tries the insert first (a caller that
    has just looked and found nothing saves a read)."""
    (key,) = lookup
    stmt = _locking_select(model, key)
    params = {"key": lookup[key]}
    if not probably_missing:
        row = session.scalars(stmt, params).first()
        if row is not None:
            return (row, False) if report else row
    insert = pg_insert if session.get_bind().dialect.name == "postgresql" else sqlite_insert
    created = session.scalars(insert(model).values(**lookup, **defaults)
                              .on_conflict_do_nothing(index_elements=[key]).returning(model),
                              execution_options={"populate_existing": True}).first()
    if created is not None:
        return (created, True) if report else created
    found = session.scalars(stmt.execution_options(populate_existing=True), params).one()
    return (found, False) if report else found


@functools.cache
def _locking_select(model: type, key: str):
    """`SELECT ... WHERE key = :key FOR UPDATE`, built once (the worker runs it for every event)."""
    return select(model).where(getattr(model, key) == bindparam("key")).with_for_update()


def find_account_for(session: Session, *, customer_id: str | None) -> Account | None:
    """The account a Stripe customer is linked to. Links are made only by `link_customer`, from a
    Checkout Session this service created (or, as a flagged last resort, by email): never from
    what a Stripe object says about itself (client_reference_id, metadata), which a Payment Link
    or anyone with Dashboard access can set (SPEC "Trust rules")."""
    if not customer_id:
        return None
    owner = session.scalar(select(StripeCustomer.account_id).where(StripeCustomer.stripe_id == customer_id))
    return session.get(Account, owner) if owner is not None else None


def link_customer(
    session: Session, customer_id: str, account: Account | None, email: str | None = None
) -> StripeCustomer:
    """Record the customer and, once we know whose it is, adopt what arrived before the link.

    Only reader accounts are ever linked: a staff or admin account never gets a Stripe customer
    (its billing email would otherwise become a way into the console)."""
    customer = _get_or_create(
        session, StripeCustomer, {"stripe_id": customer_id}, {"email": email.lower() if email else None}
    )
    if email and not customer.email:
        customer.email = email.lower()
    if account is not None and account.role != Role.MEMBER:
        log.warning("refused to link Stripe customer %s to account %s (role %s)", customer_id, account.id,
                    account.role.value)
        return customer
    if account is not None and customer.account_id is None:
        _adopt(session, customer, account)
    return customer


def link_customer_to_organisation(session: Session, customer_id: str, org: Organisation) -> StripeCustomer:
    """An organisation's customer (from a Checkout or an invoiced subscription this service
    made for it) belongs to the organisation, never to a reader: its subscription pays for
    seats, not for the buyer's own membership. What came before the link is adopted."""
    customer = _get_or_create(session, StripeCustomer, {"stripe_id": customer_id}, {})
    if customer.account_id is not None:
        log.warning("customer %s is a reader's; not linked to organisation %s", customer_id, org.id)
        return customer
    if customer.organisation_id is None:
        customer.organisation_id = org.id
        session.execute(update(StripeSubscription).where(
            StripeSubscription.customer_stripe_id == customer_id, StripeSubscription.account_id.is_(None),
            StripeSubscription.organisation_id.is_(None)).values(organisation_id=org.id))
    if customer.organisation_id == org.id and not org.stripe_customer_id:
        org.stripe_customer_id = customer_id
    return customer


def _adopt(session: Session, customer: StripeCustomer, account: Account) -> None:
    """Link a customer to a reader: what came before the link is adopted, not lost."""
    customer_id = customer.stripe_id
    customer.account_id = account.id
    # Events and subscriptions for this customer that came before the link are not lost.
    # Rows another worker holds are skipped (it links them itself), keeping the lock order
    # subscription -> customer and so no deadlock.
    orphans = select(StripeSubscription.id).where(
        StripeSubscription.customer_stripe_id == customer_id, StripeSubscription.account_id.is_(None)
    ).with_for_update(skip_locked=True)
    orphan_ids = session.scalars(orphans).all()
    if orphan_ids:
        session.execute(
            update(StripeSubscription).where(StripeSubscription.id.in_(orphan_ids)).values(account_id=account.id)
        )
    flagged = session.scalars(
        select(StripeEvent).where(
            StripeEvent.customer_stripe_id == customer_id, StripeEvent.account_id.is_(None),
            StripeEvent.type.in_(["charge.refunded", "charge.dispute.created"]),
        ).order_by(StripeEvent.stripe_created_at.desc())
    ).first()
    session.execute(
        update(StripeEvent)
        .where(StripeEvent.customer_stripe_id == customer_id, StripeEvent.account_id.is_(None))
        .values(account_id=account.id)
    )
    if flagged is not None:
        # A refund or dispute that came before we knew whose it was: flag it for staff now.
        flag(session, account, flagged.note or flagged.type)
    remember_customer(session, account)


def remember_customer(session: Session, account: Account) -> None:
    """Keep the member's newest live customer on the membership (lists read it from there)."""
    membership = membership_for(session, account)
    membership.stripe_customer_id = session.scalar(
        select(StripeCustomer.stripe_id).where(StripeCustomer.account_id == account.id,
                                               StripeCustomer.deleted.is_(False))
        .order_by(StripeCustomer.id.desc()).limit(1))


def _lock_subscription(session: Session, subscription_id: str, customer_id: str,
                       probably_missing: bool = False,
                       initial: tuple[SubscriptionSnapshot, datetime] | None = None) -> tuple[StripeSubscription, bool]:
    """The subscription row, locked; made when missing, already holding `initial` (a snapshot
    and its time) if given, so that a new subscription's first event costs one statement, not
    two. Returns (row, whether it was made with `initial`)."""
    now = datetime.now(timezone.utc)
    values: dict[str, Any] = {"customer_stripe_id": customer_id, "status": "incomplete", "snapshot_at": NEVER_READ,
                              "items": [], "cancel_at_period_end": False, "created_at": now, "updated_at": now}
    if initial is not None:
        values.update(_snapshot_values(*initial))
    row, made = _get_or_create(session, StripeSubscription, {"stripe_id": subscription_id}, values,
                               probably_missing, report=True)
    return row, made and initial is not None


def _snapshot_values(snap: SubscriptionSnapshot, snapshot_at: datetime) -> dict[str, Any]:
    return {
        "customer_stripe_id": snap.customer_id, "status": snap.status, "price_id": snap.price_id,
        "items": [dict(i) for i in snap.items], "current_period_end": snap.current_period_end,
        "current_period_start": snap.current_period_start, "cancel_at_period_end": snap.cancel_at_period_end,
        "cancel_at": snap.cancel_at, "canceled_at": snap.canceled_at, "ended_at": snap.ended_at,
        "stripe_created_at": snap.created_at, "snapshot_at": snapshot_at,
    }


def _copy_snapshot(session: Session, row: StripeSubscription, snap: SubscriptionSnapshot,
                   snapshot_at: datetime) -> None:
    """Write the snapshot to the (locked) row now, in one statement."""
    write_now(session, row, _snapshot_values(snap, snapshot_at))


_CUSTOMER_OWNER_MEMBERSHIP = (
    select(StripeCustomer, Account, Membership)
    .join(Account, Account.id == StripeCustomer.account_id)
    .join(Membership, Membership.account_id == Account.id)
    .where(StripeCustomer.stripe_id == bindparam("customer"))
    .with_for_update(of=[StripeCustomer, Membership]))
_CUSTOMER_OWNER = (
    select(StripeCustomer, Account).outerjoin(Account, Account.id == StripeCustomer.account_id)
    .where(StripeCustomer.stripe_id == bindparam("customer")).with_for_update(of=StripeCustomer))


_SUBSCRIPTION_AND_OWNER = (
    select(StripeSubscription, StripeCustomer, Account, Membership)
    .join(StripeCustomer, StripeCustomer.stripe_id == StripeSubscription.customer_stripe_id)
    .join(Account, Account.id == StripeCustomer.account_id)
    .join(Membership, Membership.account_id == Account.id)
    .where(StripeSubscription.stripe_id == bindparam("subscription"))
    .with_for_update(of=[StripeSubscription, StripeCustomer, Membership]))

Owner = tuple[StripeCustomer, Account | None, Membership | None]


def _lock_with_owner(session: Session, subscription_id: str, customer_id: str,
                     initial: tuple[SubscriptionSnapshot, datetime] | None = None
                     ) -> tuple[StripeSubscription, Owner | None, bool]:
    """The subscription row, locked, and in the usual case (a known subscription of a linked
    customer with a membership) its customer and membership too, in one statement. The locks
    are taken in the usual order: subscription, customer, membership."""
    with session.no_autoflush:
        found = session.execute(_SUBSCRIPTION_AND_OWNER, {"subscription": subscription_id}).first()
    if found is not None and (not customer_id or found[0].customer_stripe_id == customer_id):
        return found[0], (found[1], found[2], found[3]), False
    # Not there, or its customer is not linked yet: a new subscription is the usual reason.
    row, made = _lock_subscription(session, subscription_id, customer_id, probably_missing=found is None,
                                   initial=initial)
    return row, None, made


def _customer_and_owner(session: Session, customer_id: str
                        ) -> tuple[StripeCustomer, Account | None, Membership | None]:
    """The customer row and the membership of the account it is linked to (both locked), with
    the account, in one read in the usual case (the subscription's changes are written once, at
    the end, not flushed ahead of this read)."""
    with session.no_autoflush:
        found = session.execute(_CUSTOMER_OWNER_MEMBERSHIP, {"customer": customer_id}).first()
        if found is not None:
            return found[0], found[1], found[2]
        # Not linked yet, or linked to an account without a membership row yet.
        found = session.execute(_CUSTOMER_OWNER, {"customer": customer_id}).first()
    if found is not None:
        return found[0], found[1], None
    return _get_or_create(session, StripeCustomer, {"stripe_id": customer_id}, {}), None, None


def _finish(session: Session, row: StripeSubscription, snap: SubscriptionSnapshot, how: str,
            account: Account | None, owner_locked: Owner | None = None) -> Applied:
    # One read of the customer (locked: subscription, then customer, then membership), unless
    # it came with the subscription.
    if owner_locked is not None and owner_locked[0].stripe_id == snap.customer_id:
        customer, linked, locked_membership = owner_locked
    else:
        customer, linked, locked_membership = _customer_and_owner(session, snap.customer_id)
    if customer.organisation_id is not None or row.organisation_id is not None:
        # An organisation's subscription: its state, its seat count and its seats' readers.
        if row.organisation_id is None:
            row.organisation_id = customer.organisation_id
        org = lock_organisation(session, row.organisation_id)
        if org is not None:
            recompute_organisation(session, org)
        return Applied(row, None, how, organisation=org)
    if account is None:
        account = linked
    if account is not None and account.role != Role.MEMBER:
        account = None
    if row.account_id is None and account is not None:
        row.account_id = account.id
    owner = account if account is not None and row.account_id == account.id else (
        session.get(Account, row.account_id) if row.account_id is not None else None)
    if owner is None:
        return Applied(row, None, how)
    if customer.account_id is None:
        _adopt(session, customer, owner)
    membership = locked_membership if linked is owner and locked_membership is not None \
        else membership_for(session, owner)
    before = membership.status
    with history.source(session, history.STRIPE_EVENT, outer_wins=True):
        recompute(session, owner, membership)
    return Applied(row, owner, how, before, membership.status)


def apply_subscription_event(
    session: Session, gateway: BillingGateway, obj: dict[str, Any], created: datetime,
    account: Account | None = None,
) -> Applied:
    """A subscription snapshot carried by an event created at `created`."""
    snap = snapshot_from_subscription(obj)
    row, owner_locked, made = _lock_with_owner(session, snap.id, snap.customer_id, initial=(snap, created))
    if not made and row.snapshot_at > NEVER_READ and row.customer_stripe_id != snap.customer_id:
        # Stripe never moves a subscription to another customer: an event that says so is not
        # applied (it would hand the subscription, and its member's access, to someone else).
        log.warning("subscription %s: event names customer %s, the subscription is %s's; not applied",
                    snap.id, snap.customer_id, row.customer_stripe_id)
        return Applied(row, None, "foreign")
    if made:
        how = "applied"  # a new row, made holding this snapshot
    elif created > row.snapshot_at:
        _copy_snapshot(session, row, snap, created)
        how = "applied"
    elif created == row.snapshot_at:
        fetched = gateway.retrieve_subscription(snap.id)
        snap = snapshot_from_subscription(fetched.obj)
        _copy_snapshot(session, row, snap, max(row.snapshot_at, fetched.as_of - timedelta(seconds=1)))
        how = "refetched"
    else:
        log.info("subscription %s: event of %s is older than the stored snapshot of %s; ignored",
                 snap.id, created.isoformat(), row.snapshot_at.isoformat())
        how = "stale"
    return _finish(session, row, snap, how, account, owner_locked)


def sync_subscription(
    session: Session, gateway: BillingGateway, subscription_id: str, customer_id: str | None = None,
    account: Account | None = None,
) -> Applied:
    """Read the subscription from Stripe under the row lock and apply it (it is the newest truth)."""
    row, owner_locked, _made = _lock_with_owner(session, subscription_id, customer_id or "")
    fetched = gateway.retrieve_subscription(subscription_id)
    return _apply_read(session, row, fetched.obj, fetched.as_of, account, owner_locked)


def listed_differs(session: Session, obj: dict[str, Any]) -> bool:
    """Reconcile's drift check: does a listed subscription differ from what we hold?

    A list page is read without our lock, so it is only used to spot drift; the repair reads
    the subscription again under the lock (`sync_subscription`)."""
    snap = snapshot_from_subscription(obj)
    row = session.scalars(select(StripeSubscription).where(StripeSubscription.stripe_id == snap.id)).first()
    if row is None or row.snapshot_at == NEVER_READ or (row.account_id is None and row.organisation_id is None):
        return True  # unknown, never read, or linked to no one yet (reconcile tries email)
    return (row.status, row.current_period_end, row.cancel_at_period_end, row.cancel_at, row.items or []) != (
        snap.status, snap.current_period_end, snap.cancel_at_period_end, snap.cancel_at, [dict(i) for i in snap.items])


def _apply_read(session: Session, row: StripeSubscription, obj: dict[str, Any], as_of: datetime,
                account: Account | None, owner_locked: Owner | None = None) -> Applied:
    """A read made while holding the row lock: it is newer than every event we have applied.

    Stamped one second before Stripe's `Date` (the header is written after the read and has
    second precision), so an event from that second is treated as a tie and re-read."""
    snap = snapshot_from_subscription(obj)
    before = (row.status, row.current_period_end, row.cancel_at_period_end) if row.snapshot_at > NEVER_READ else None
    _copy_snapshot(session, row, snap, max(row.snapshot_at, as_of - timedelta(seconds=1)))
    after = (row.status, row.current_period_end, row.cancel_at_period_end)
    applied = _finish(session, row, snap, "applied" if before != after else "unchanged", account, owner_locked)
    applied.sub_before, applied.sub_after = before, after
    return applied


def link_by_email(session: Session, customer_id: str, email: str | None) -> Account | None:
    """The last resort, for a customer no session of ours links (a subscription made in the
    Dashboard, a Payment Link): a reader account with that email and no customer yet is linked,
    and flagged so that staff check it. Never a staff or admin account."""
    email = (email or "").strip().lower()
    if not email:
        return None
    if session.scalar(select(StripeCustomer.organisation_id).where(StripeCustomer.stripe_id == customer_id)):
        return None  # an organisation's customer: its contact's email links nothing
    account = session.scalars(select(Account).where(Account.email == email, Account.role == Role.MEMBER)).first()
    if account is None:
        return None
    if account.email_verified_at is None:
        # Anyone can join with anyone's address: an unproven one links nothing (the real owner
        # would otherwise see their payment and their billing in a stranger's account).
        log.info("customer %s matches unverified account %s by email: not linked", customer_id, account.id)
        return None
    has_customer = session.scalar(select(StripeCustomer.id).where(StripeCustomer.account_id == account.id).limit(1))
    if has_customer is not None:
        return None
    customer = link_customer(session, customer_id, account, email)
    if customer.account_id != account.id:
        return None
    flag(session, account, f"Linked to Stripe customer {customer_id} by email match, not by a checkout of ours: "
                           "check that it is theirs")
    with history.source(session, history.STRIPE_EVENT, outer_wins=True):
        recompute(session, account)
    return account
