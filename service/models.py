"""Typed SQLAlchemy 2 models. Every table the service needs is here and in the first migration."""
from __future__ import annotations

from datetime import datetime, timedelta, timezone
from typing import Any

import hashlib
import hmac

from flask import current_app
from flask_login import UserMixin
from sqlalchemy import JSON, Boolean, Enum, ForeignKey, Index, Integer, String, Text, text
from sqlalchemy.orm import Mapped, mapped_column, relationship

from .db import Base, utcnow
from .domain.membership import Comp, Interval, Level as LevelTerms, MembershipStatus, Role, entitled


# `snapshot_at` of a subscription row made before anything was read for it.
NEVER_READ = datetime(1970, 1, 1, tzinfo=timezone.utc)


def session_fingerprint(account: "Account") -> str:
    key = current_app.config["SECRET_KEY"].encode()
    material = f"{account.password_hash}|{account.role.value if account.role else ''}".encode()
    return hmac.new(key, material, hashlib.sha256).hexdigest()[:24]


def _enum(cls: type, name: str) -> Enum:
    return Enum(
        cls,
        name=name,
        native_enum=False,
        create_constraint=True,
        length=20,
        values_callable=lambda e: [m.value for m in e],
        validate_strings=True,
    )


class Account(UserMixin, Base):
    """A person who can log in: a reader (member) or staff."""

    __tablename__ = "accounts"
    __table_args__ = (
        # Paywall lookups by email need only the id: answered from the index alone. Its
        # text_pattern_ops serve the staff search's email prefix too (LIKE 'q%' under any collation).
        Index("ix_accounts_email_paywall", "email", postgresql_include=["id"],
              postgresql_ops={"email": "text_pattern_ops"}),
        # Newest first, one page after another (keyset pagination on (created_at, id)).
        Index("ix_accounts_created_at", "created_at", "id"),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    # Stored lowercased: emails are compared case-insensitively everywhere.
    email: Mapped[str] = mapped_column(String(320), unique=True)
    name: Mapped[str] = mapped_column(String(200))
    password_hash: Mapped[str] = mapped_column(String(255))
    role: Mapped[Role] = mapped_column(_enum(Role, "account_role"), default=Role.MEMBER)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(default=utcnow, onupdate=utcnow)
    last_login_at: Mapped[datetime | None]
    # Set when the owner proved they read this address (a reset or confirmation link used).
    email_verified_at: Mapped[datetime | None]
    # The reader's language (en, fr, ar) for pages, mail, Checkout and DAWNS; None: not chosen yet.
    language: Mapped[str | None] = mapped_column(String(8))

    membership: Mapped[Membership | None] = relationship(back_populates="account", uselist=False)

    def get_id(self) -> str:
        """The session remembers the id and a fingerprint of the password and role, so that a
        password reset or a role change ends every other session of this account."""
        return f"{self.id}:{session_fingerprint(self)}"

    @property
    def is_staff(self) -> bool:
        return self.role in (Role.STAFF, Role.ADMIN)

    @property
    def is_admin(self) -> bool:
        return self.role == Role.ADMIN


class Membership(Base):
    """The member's state, as decided by the domain rules from Stripe and staff comps."""

    __tablename__ = "memberships"
    # The paywall reads status and paid_through by account: answered from the index alone.
    __table_args__ = (
        Index("ix_memberships_paywall", "account_id",
              postgresql_include=["status", "paid_through", "level_name", "comped_at", "comped_until",
                                  "organisation_id"]),
        # The staff list: join date then id, all members or one state at a time; the ids of a
        # page (even page 2,000) come from these indexes alone (see membership/directory.py).
        Index("ix_memberships_joined", "created_at", "account_id"),
        Index("ix_memberships_status_joined", "status", "created_at", "account_id"),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    account_id: Mapped[int] = mapped_column(ForeignKey("accounts.id", ondelete="CASCADE"), unique=True)
    status: Mapped[MembershipStatus] = mapped_column(
        _enum(MembershipStatus, "membership_status"), default=MembershipStatus.PENDING
    )
    paid_through: Mapped[datetime | None]
    cancel_at_period_end: Mapped[bool] = mapped_column(Boolean, default=False)
    stripe_subscription_id: Mapped[str | None] = mapped_column(String(255))
    comp_reason: Mapped[str | None] = mapped_column(Text)
    comped_until: Mapped[datetime | None]
    comped_at: Mapped[datetime | None]
    flagged_at: Mapped[datetime | None]
    flag_reason: Mapped[str | None] = mapped_column(Text)
    # The level the member pays for, as derived (see domain.membership.Level), and its value per
    # month in cents (a yearly amount / 12), kept for the figures staff ask for.
    level_name: Mapped[str | None] = mapped_column(String(100))
    level_amount: Mapped[int | None] = mapped_column(Integer)
    level_currency: Mapped[str | None] = mapped_column(String(3))
    level_interval: Mapped[str | None] = mapped_column(String(10))
    monthly_value: Mapped[int] = mapped_column(Integer, default=0, server_default="0")
    # Two paying subscriptions at once (one made in the Dashboard, say): staff can filter for it.
    paying_twice: Mapped[bool] = mapped_column(Boolean, default=False, server_default="0", index=True)
    # DAWNS Digest. opt_in: the member's own choice (join box, account toggle, Mailchimp
    # unsubscribe). desired: what we last asked the provider to hold. status/email/synced_at:
    # what the provider confirmed it holds.
    newsletter_opt_in: Mapped[bool] = mapped_column(Boolean, default=True)
    newsletter_desired: Mapped[str] = mapped_column(String(20), default="none", server_default="none")
    newsletter_status: Mapped[str] = mapped_column(String(20), default="not_subscribed")
    newsletter_email: Mapped[str | None] = mapped_column(String(320))
    newsletter_synced_at: Mapped[datetime | None]
    # The member's newest Stripe customer that still exists, kept here when links change, so
    # lists and exports read it without a query per row.
    stripe_customer_id: Mapped[str | None] = mapped_column(String(255))
    # The organisation whose seat entitles the member (state `organisation`), else null.
    organisation_id: Mapped[int | None] = mapped_column(ForeignKey("organisations.id", ondelete="SET NULL"),
                                                        index=True)
    # Whether the member holds a seat at all (live or suspended): a recompute looks for seats
    # only then, so the worker's hot path pays nothing for members without one.
    has_seat: Mapped[bool] = mapped_column(Boolean, default=False, server_default="0")
    status_changed_at: Mapped[datetime] = mapped_column(default=utcnow)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(default=utcnow, onupdate=utcnow)

    account: Mapped[Account] = relationship(back_populates="membership")
    organisation: Mapped[Organisation | None] = relationship()

    def entitled_at(self, now: datetime, grace: timedelta) -> bool:
        return entitled(self.status, self.paid_through, now, grace,
                        Comp(granted=self.comped_at is not None, until=self.comped_until))

    @property
    def level(self) -> LevelTerms | None:
        if self.level_name is None or self.level_amount is None:
            return None
        return LevelTerms(self.level_name, self.level_amount, self.level_currency or "usd",
                          Interval(self.level_interval or "month"))


class StripeCustomer(Base):
    __tablename__ = "stripe_customers"

    id: Mapped[int] = mapped_column(primary_key=True)
    stripe_id: Mapped[str] = mapped_column(String(255), unique=True)
    # Null while the customer is not yet linked to an account (events can come first).
    account_id: Mapped[int | None] = mapped_column(
        ForeignKey("accounts.id", ondelete="SET NULL"), index=True
    )
    email: Mapped[str | None] = mapped_column(String(320))
    # An organisation's customer (its seats' subscription) is linked to it, never to an account.
    organisation_id: Mapped[int | None] = mapped_column(ForeignKey("organisations.id", ondelete="SET NULL"),
                                                        index=True)
    deleted: Mapped[bool] = mapped_column(Boolean, default=False)
    # Stripe time of the customer snapshot we hold (customer.updated can arrive out of order).
    snapshot_at: Mapped[datetime | None]
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(default=utcnow, onupdate=utcnow)


class StripeSubscription(Base):
    __tablename__ = "stripe_subscriptions"

    id: Mapped[int] = mapped_column(primary_key=True)
    stripe_id: Mapped[str] = mapped_column(String(255), unique=True)
    customer_stripe_id: Mapped[str] = mapped_column(String(255), index=True)
    account_id: Mapped[int | None] = mapped_column(
        ForeignKey("accounts.id", ondelete="SET NULL"), index=True
    )
    organisation_id: Mapped[int | None] = mapped_column(ForeignKey("organisations.id", ondelete="SET NULL"),
                                                        index=True)
    status: Mapped[str] = mapped_column(String(40))
    price_id: Mapped[str | None] = mapped_column(String(255))
    # Every item as snapshotted: [{"id", "price", "product", "amount", "currency", "interval",
    # "quantity"}]. Which of them count for membership is the catalogue's call, at recompute.
    items: Mapped[list[dict[str, Any]]] = mapped_column(JSON, default=list)
    current_period_end: Mapped[datetime | None]
    # Where the current period began: for a subscription behind on payment, the paid time ended here.
    current_period_start: Mapped[datetime | None]
    cancel_at_period_end: Mapped[bool] = mapped_column(Boolean, default=False)
    cancel_at: Mapped[datetime | None]
    canceled_at: Mapped[datetime | None]
    ended_at: Mapped[datetime | None]
    # Stripe's `created` of the subscription: the newest one decides among the non-entitling.
    stripe_created_at: Mapped[datetime | None]
    # The moment of the truth this row reflects: an older snapshot never overwrites it.
    snapshot_at: Mapped[datetime]
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(default=utcnow, onupdate=utcnow)


class StripeEvent(Base):
    """Every webhook event, stored once (the unique id makes duplicates harmless), then applied
    by the worker: `status` is its place in the queue, `outcome` what applying it did."""

    __tablename__ = "stripe_events"
    __table_args__ = (
        # The worker's claim: due rows in Stripe's order.
        Index("ix_stripe_events_queue", "status", "next_attempt_at", "stripe_created_at"),
        # One customer's events go in Stripe's order: "is an older one still waiting?"
        Index("ix_stripe_events_customer_order", "customer_stripe_id", "stripe_created_at"),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    stripe_id: Mapped[str] = mapped_column(String(255), unique=True)
    type: Mapped[str] = mapped_column(String(100), index=True)
    api_version: Mapped[str | None] = mapped_column(String(40))
    stripe_created_at: Mapped[datetime]
    livemode: Mapped[bool] = mapped_column(Boolean, default=False)
    account_id: Mapped[int | None] = mapped_column(
        ForeignKey("accounts.id", ondelete="SET NULL"), index=True
    )
    object_id: Mapped[str | None] = mapped_column(String(255), index=True)
    customer_stripe_id: Mapped[str | None] = mapped_column(String(255), index=True)
    payload: Mapped[dict[str, Any]] = mapped_column(JSON)
    outcome: Mapped[str] = mapped_column(String(20), default="received")
    note: Mapped[str | None] = mapped_column(Text)
    received_at: Mapped[datetime] = mapped_column(default=utcnow)
    # The queue: pending -> in_flight (claimed until claimed_until) -> done, or back to pending
    # with a later next_attempt_at, or failed after the last attempt (staff can replay it).
    status: Mapped[str] = mapped_column(String(20), default="pending")
    attempts: Mapped[int] = mapped_column(Integer, default=0, server_default="0")
    next_attempt_at: Mapped[datetime | None]
    claimed_until: Mapped[datetime | None]
    last_error: Mapped[str | None] = mapped_column(Text)
    applied_at: Mapped[datetime | None]
    # The X-Request-ID of the webhook delivery that stored it: the worker logs it when applying.
    request_id: Mapped[str | None] = mapped_column(String(64))


class NewsletterOutbox(Base):
    """Enrollment changes to deliver to the newsletter provider, written with the change."""

    __tablename__ = "newsletter_outbox"
    __table_args__ = (Index("ix_newsletter_outbox_due", "status", "next_attempt_at"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    account_id: Mapped[int] = mapped_column(ForeignKey("accounts.id", ondelete="CASCADE"), index=True)
    action: Mapped[str] = mapped_column(String(20))
    email: Mapped[str] = mapped_column(String(320))
    payload: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    status: Mapped[str] = mapped_column(String(20), default="pending")
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    next_attempt_at: Mapped[datetime] = mapped_column(default=utcnow)
    claimed_until: Mapped[datetime | None]
    last_error: Mapped[str | None] = mapped_column(Text)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    delivered_at: Mapped[datetime | None]
    # The request (or worker job) that wrote the row: the worker logs it when delivering.
    request_id: Mapped[str | None] = mapped_column(String(64))


class MailOutbox(Base):
    """Reader and staff mail, written in the transaction of the change that causes it and
    delivered by the worker (service/mail.py): pending → in_flight → delivered | failed."""

    __tablename__ = "mail_outbox"
    __table_args__ = (Index("ix_mail_outbox_due", "status", "next_attempt_at"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    to_address: Mapped[str] = mapped_column(String(320))
    subject: Mapped[str] = mapped_column(String(500))
    text_body: Mapped[str] = mapped_column(Text)
    html_body: Mapped[str] = mapped_column(Text)
    language: Mapped[str | None] = mapped_column(String(8))  # the language the message is written in
    # What the message is (password_reset, seat_invitation, …): for staff and the logs.
    kind: Mapped[str] = mapped_column(String(50))
    account_id: Mapped[int | None] = mapped_column(ForeignKey("accounts.id", ondelete="SET NULL"), index=True)
    status: Mapped[str] = mapped_column(String(20), default="pending")
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    next_attempt_at: Mapped[datetime] = mapped_column(default=utcnow)
    claimed_until: Mapped[datetime | None]
    last_error: Mapped[str | None] = mapped_column(Text)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    sent_at: Mapped[datetime | None]
    # The request (or worker job) that wrote the row: the worker logs it when delivering.
    request_id: Mapped[str | None] = mapped_column(String(64))


class ApiToken(Base):
    __tablename__ = "api_tokens"
    __table_args__ = (
        # One live token per name; a revoked token's name can be given to its replacement.
        Index("uq_api_tokens_live_name", "name", unique=True, sqlite_where=text("revoked_at IS NULL"),
              postgresql_where=text("revoked_at IS NULL")),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    name: Mapped[str] = mapped_column(String(100))
    # SHA-256 of the token: the token itself is shown once and never stored.
    token_hash: Mapped[str] = mapped_column(String(64), unique=True)
    # Space-separated scopes (SPEC "Trust rules"), e.g. "entitlements:read members:read".
    scopes: Mapped[str] = mapped_column(String(200), default="entitlements:read")
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    revoked_at: Mapped[datetime | None]
    last_used_at: Mapped[datetime | None]


class MembershipHistory(Base):
    """Append-only: every change of a member's state, level or value, written in the
    transaction of the change (`membership.history`). `/staff/insights` reads only this."""

    __tablename__ = "membership_history"
    __table_args__ = (
        # Each member's rows in order (the spans between changes): covering, so the insights'
        # window functions read the index alone (no sort, no table).
        Index("ix_membership_history_account_at", "account_id", "at", "id",
              postgresql_include=["to_status", "from_status", "entitled", "level_name", "monthly_value", "currency",
                                  "organisation_id", "newsletter"]),
        Index("ix_membership_history_at", "at"),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    account_id: Mapped[int] = mapped_column(ForeignKey("accounts.id", ondelete="CASCADE"))
    at: Mapped[datetime] = mapped_column(default=utcnow)
    from_status: Mapped[str | None] = mapped_column(String(20))  # None: the member's first row
    to_status: Mapped[str] = mapped_column(String(20))
    entitled: Mapped[bool] = mapped_column(Boolean, default=False)  # what to_status gives, as written
    level_name: Mapped[str | None] = mapped_column(String(100))
    # What the member pays per month in cents (a yearly amount / 12); 0 when not paying.
    monthly_value: Mapped[int] = mapped_column(Integer, default=0)
    currency: Mapped[str | None] = mapped_column(String(3))
    organisation_id: Mapped[int | None] = mapped_column(ForeignKey("organisations.id", ondelete="SET NULL"))
    newsletter: Mapped[bool] = mapped_column(Boolean, default=False)  # DAWNS asked to hold them
    # stripe event, staff, seat, import, system (a grace period or a comp running out).
    source: Mapped[str] = mapped_column(String(20))
    stripe_event_id: Mapped[str | None] = mapped_column(String(255))


class AuditLog(Base):
    """Who did what and when: staff actions and security-relevant account events."""

    __tablename__ = "audit_log"

    id: Mapped[int] = mapped_column(primary_key=True)
    actor_id: Mapped[int | None] = mapped_column(
        ForeignKey("accounts.id", ondelete="SET NULL"), index=True
    )
    actor_email: Mapped[str | None] = mapped_column(String(320))
    action: Mapped[str] = mapped_column(String(60))
    target_account_id: Mapped[int | None] = mapped_column(
        ForeignKey("accounts.id", ondelete="SET NULL"), index=True
    )
    # An action on an organisation (its timeline reads these).
    target_organisation_id: Mapped[int | None] = mapped_column(
        ForeignKey("organisations.id", ondelete="SET NULL"), index=True
    )
    details: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    created_at: Mapped[datetime] = mapped_column(default=utcnow, index=True)


class CheckoutSession(Base):
    """Every Stripe Checkout Session: the ones this service created (with the account it made
    each one for), and, as received, the ones it did not (Payment Links, pricing tables, the
    Dashboard). Only a session of ours links a Stripe customer to an account (SPEC "Trust rules")."""

    __tablename__ = "checkout_sessions"

    id: Mapped[int] = mapped_column(primary_key=True)
    stripe_id: Mapped[str] = mapped_column(String(255), unique=True)
    # True: created by this service for `account_id`. False: seen in a webhook, never trusted.
    ours: Mapped[bool] = mapped_column(Boolean)
    account_id: Mapped[int | None] = mapped_column(ForeignKey("accounts.id", ondelete="SET NULL"), index=True)
    purpose: Mapped[str] = mapped_column(String(20), default="membership")  # membership | organisation
    # purpose "organisation": the organisation this checkout buys seats for.
    organisation_id: Mapped[int | None] = mapped_column(ForeignKey("organisations.id", ondelete="SET NULL"))
    status: Mapped[str] = mapped_column(String(20), default="open")
    customer_stripe_id: Mapped[str | None] = mapped_column(String(255), index=True)
    subscription_stripe_id: Mapped[str | None] = mapped_column(String(255))
    # What a foreign session claimed (client_reference_id) and its payer's email, for staff only.
    claimed_reference: Mapped[str | None] = mapped_column(String(255))
    email: Mapped[str | None] = mapped_column(String(320))
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    completed_at: Mapped[datetime | None]


class AccountToken(Base):
    """Single-use links sent by email (email confirmation; later sign-in links and invitations).

    Only the SHA-256 of the token is stored; `used_at` makes it single use."""

    __tablename__ = "account_tokens"

    id: Mapped[int] = mapped_column(primary_key=True)
    token_hash: Mapped[str] = mapped_column(String(64), unique=True)
    purpose: Mapped[str] = mapped_column(String(30))
    account_id: Mapped[int | None] = mapped_column(ForeignKey("accounts.id", ondelete="CASCADE"), index=True)
    data: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    expires_at: Mapped[datetime]
    used_at: Mapped[datetime | None]


class LoginSession(Base):
    """A signed-in browser. The cookie carries a random id; its hash is here, so logging out
    (or "sign out everywhere", or staff) ends the session on the server, not just in the cookie."""

    __tablename__ = "login_sessions"

    id: Mapped[int] = mapped_column(primary_key=True)
    token_hash: Mapped[str] = mapped_column(String(64), unique=True)
    account_id: Mapped[int] = mapped_column(ForeignKey("accounts.id", ondelete="CASCADE"), index=True)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    ended_at: Mapped[datetime | None]


class Level(Base):
    """A membership level of the catalogue: what readers may choose on /join."""

    __tablename__ = "levels"

    id: Mapped[int] = mapped_column(primary_key=True)
    name: Mapped[str] = mapped_column(String(100))
    amount: Mapped[int] = mapped_column(Integer)  # cents per interval
    currency: Mapped[str] = mapped_column(String(3), default="usd")
    interval: Mapped[str] = mapped_column(String(10))  # month | year
    # The Stripe Price readers join with now; earlier prices stay in level_prices.
    stripe_price_id: Mapped[str] = mapped_column(String(255), unique=True)
    public: Mapped[bool] = mapped_column(Boolean, default=True)
    archived: Mapped[bool] = mapped_column(Boolean, default=False)
    position: Mapped[int] = mapped_column(Integer, default=0)
    # The level checked by default on /join, and the one STRIPE_PRICE_ID names.
    default: Mapped[bool] = mapped_column(Boolean, default=False)
    # A yearly per-seat level that organisations buy: never shown on /join.
    organisation: Mapped[bool] = mapped_column(Boolean, default=False, server_default="0")
    created_at: Mapped[datetime] = mapped_column(default=utcnow)

    @property
    def terms(self) -> LevelTerms:
        return LevelTerms(self.name, self.amount, self.currency, Interval(self.interval))


class LevelPrice(Base):
    """Every Stripe Price that is or ever was a level's: a member paying an older price keeps
    their membership (raising a price never takes access away)."""

    __tablename__ = "level_prices"

    id: Mapped[int] = mapped_column(primary_key=True)
    stripe_price_id: Mapped[str] = mapped_column(String(255), unique=True)
    level_id: Mapped[int] = mapped_column(ForeignKey("levels.id", ondelete="CASCADE"), index=True)
    product_id: Mapped[str | None] = mapped_column(String(255))
    amount: Mapped[int] = mapped_column(Integer)
    currency: Mapped[str] = mapped_column(String(3), default="usd")
    interval: Mapped[str] = mapped_column(String(10))
    created_at: Mapped[datetime] = mapped_column(default=utcnow)


class ServiceSetting(Base):
    """Facts the service learned once and keeps (e.g. the membership product read from Stripe)."""

    __tablename__ = "service_settings"

    key: Mapped[str] = mapped_column(String(100), primary_key=True)
    value: Mapped[str] = mapped_column(Text)
    updated_at: Mapped[datetime] = mapped_column(default=utcnow, onupdate=utcnow)


class ExportJob(Base):
    """A CSV export of the staff list, made by the worker into EXPORT_DIR: never cut off, with
    progress; a failed or killed one is never offered for download; files expire."""

    __tablename__ = "export_jobs"
    __table_args__ = (Index("ix_export_jobs_queue", "status", "created_at"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    requested_by: Mapped[int | None] = mapped_column(ForeignKey("accounts.id", ondelete="SET NULL"), index=True)
    filters: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    status: Mapped[str] = mapped_column(String(20), default="pending")  # pending running done failed expired
    rows_done: Mapped[int] = mapped_column(Integer, default=0)
    rows_estimate: Mapped[int | None] = mapped_column(Integer)
    file_name: Mapped[str | None] = mapped_column(String(255))
    error: Mapped[str | None] = mapped_column(Text)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    started_at: Mapped[datetime | None]
    finished_at: Mapped[datetime | None]
    expires_at: Mapped[datetime | None]
    claimed_until: Mapped[datetime | None]


class Organisation(Base):
    """An organisation that buys seats for its people (SPEC "Organisations"): its billing state
    is derived from its own Stripe subscription by the same rules as a member's."""

    __tablename__ = "organisations"

    id: Mapped[int] = mapped_column(primary_key=True)
    name: Mapped[str] = mapped_column(String(200))
    slug: Mapped[str] = mapped_column(String(80), unique=True)
    # The billing contact, who manages the seats.
    admin_account_id: Mapped[int | None] = mapped_column(ForeignKey("accounts.id", ondelete="SET NULL"), index=True)
    # Seats bought: the quantity of the organisation's subscription (or what staff set).
    seats: Mapped[int] = mapped_column(Integer, default=0)
    # Lowercased email domains whose readers may claim a seat, e.g. ["unicef.org"].
    domains: Mapped[list[str]] = mapped_column(JSON, default=list)
    level_id: Mapped[int | None] = mapped_column(ForeignKey("levels.id", ondelete="SET NULL"))
    # "checkout" (self-serve) or "invoice" (staff-created, Stripe emails the invoices).
    billing: Mapped[str] = mapped_column(String(20), default="checkout")
    # Derived, like a member's (domain.membership.derive): state and paid-through time.
    status: Mapped[MembershipStatus] = mapped_column(
        _enum(MembershipStatus, "organisation_status"), default=MembershipStatus.PENDING)
    paid_through: Mapped[datetime | None]
    cancel_at_period_end: Mapped[bool] = mapped_column(Boolean, default=False)
    stripe_customer_id: Mapped[str | None] = mapped_column(String(255))
    stripe_subscription_id: Mapped[str | None] = mapped_column(String(255))
    # By invoice: seats entitle until trial_ends_at while the first invoice is unpaid.
    trial_ends_at: Mapped[datetime | None]
    first_paid_at: Mapped[datetime | None]
    comp_reason: Mapped[str | None] = mapped_column(Text)
    comped_at: Mapped[datetime | None]
    comped_until: Mapped[datetime | None]
    # When the newest seats were suspended because Stripe lowered the quantity (shown to its admin).
    seats_suspended_at: Mapped[datetime | None]
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(default=utcnow, onupdate=utcnow)

    admin: Mapped[Account | None] = relationship(foreign_keys=[admin_account_id])
    level: Mapped[Level | None] = relationship()

    @property
    def comp(self) -> Comp:
        return Comp(granted=self.comped_at is not None, until=self.comped_until)


class Seat(Base):
    """A reader's seat in an organisation: active, suspended (the quantity went below it) or
    removed. At most one seat that is not removed per reader and organisation."""

    __tablename__ = "seats"
    __table_args__ = (
        Index("uq_seats_live", "organisation_id", "account_id", unique=True,
              sqlite_where=text("status != 'removed'"), postgresql_where=text("status != 'removed'")),
        Index("ix_seats_account", "account_id", "status"),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    organisation_id: Mapped[int] = mapped_column(ForeignKey("organisations.id", ondelete="CASCADE"), index=True)
    account_id: Mapped[int] = mapped_column(ForeignKey("accounts.id", ondelete="CASCADE"))
    status: Mapped[str] = mapped_column(String(20), default="active")  # active | suspended | removed
    how: Mapped[str] = mapped_column(String(20))  # invitation | domain | staff
    taken_at: Mapped[datetime] = mapped_column(default=utcnow)
    suspended_at: Mapped[datetime | None]
    removed_at: Mapped[datetime | None]

    organisation: Mapped[Organisation] = relationship()
    account: Mapped[Account] = relationship()
