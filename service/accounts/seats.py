"""What readers and organisation admins do with seats: invitations, domain claims, removals.

Service functions: they own the session and the commit. Who may do what is decided here, not
in the views: only an organisation's admin manages its seats; an invitation is a single-use
link sent to the invited address, so following it proves that address (it signs its owner in,
or creates their account); a domain claim needs an address the reader has proved. Seats are
given by `membership.organisations.take_seat`, which never exceeds the quantity.
"""
from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import timedelta

from sqlalchemy import select

from ..db import get_session, utcnow
from ..domain.membership import Role
from ..i18n import current_language, gettext as _, in_language, ngettext
from ..mail import send_mail
from ..membership.reader_mail import hello, letter
from ..membership.organisations import (
    REMOVED,
    SeatError,
    live_seat,
    on_domains,
    remove_seat,
    seat_count,
    take_seat,
)
from ..models import Account, AccountToken, AuditLog, Membership, Organisation, Seat
from ..urls import absolute_url
from . import links
from .services import end_sessions, hash_password, normalize_email

log = logging.getLogger("service.seats")

INVITE_PURPOSE = "org_invite"
CLAIM_PURPOSE = "org_claim"
INVITE_TTL = timedelta(days=7)
CLAIM_TTL = timedelta(hours=24)


class NotAllowed(Exception):
    """Not this reader's organisation to manage (the view answers 404: no hint that it exists)."""


def _audit(actor: Account | None, action: str, org: Organisation, target: Account | None = None, **details) -> None:
    get_session().add(AuditLog(actor_id=actor.id if actor else None, actor_email=actor.email if actor else "system",
                               action=action, target_account_id=target.id if target else None,
                               target_organisation_id=org.id, details=details))


def by_slug(slug: str) -> Organisation | None:
    if not slug or len(slug) > 80:
        return None
    return get_session().scalars(select(Organisation).where(Organisation.slug == slug)).first()


def managed_by(account: Account, slug: str) -> Organisation:
    """The organisation, if this reader is its admin; NotAllowed otherwise (also when unknown)."""
    org = by_slug(slug)
    if org is None or account.role != Role.MEMBER or org.admin_account_id != account.id:
        raise NotAllowed()
    return org


@dataclass(frozen=True)
class SeatRow:
    seat: Seat
    email: str
    name: str


def seats_of(org: Organisation) -> list[SeatRow]:
    rows = get_session().execute(select(Seat, Account.email, Account.name).join(Account, Account.id == Seat.account_id)
                                 .where(Seat.organisation_id == org.id, Seat.status != REMOVED)
                                 .order_by(Seat.taken_at, Seat.id)).all()
    return [SeatRow(seat, email, name) for seat, email, name in rows]


def pending_invitations(org: Organisation) -> list[str]:
    """Addresses invited and not yet holding a seat."""
    session = get_session()
    rows = session.scalars(select(AccountToken).where(
        AccountToken.purpose == INVITE_PURPOSE, AccountToken.used_at.is_(None),
        AccountToken.expires_at > utcnow())).all()
    holders = set(session.scalars(select(Account.email).join(Seat, Seat.account_id == Account.id).where(
        Seat.organisation_id == org.id, Seat.status != REMOVED)))
    return sorted({r.data.get("email", "") for r in rows if r.data.get("organisation_id") == org.id} - holders)


# --- invitations -------------------------------------------------------------------------------

def invite(admin: Account, slug: str, email: str) -> None:
    """Send a single-use invitation to `email` (7 days). Room is checked again on acceptance."""
    session = get_session()
    org = managed_by(admin, slug)
    email = normalize_email(email)
    count = seat_count(session, org)
    if count.used >= org.seats:
        raise SeatError(ngettext("The one seat is taken: remove a seat or add seats first.",
                                 "All %(num)d seats are taken: remove a seat or add seats first.", org.seats))
    holder = session.scalar(select(Seat.id).join(Account, Account.id == Seat.account_id).where(
        Seat.organisation_id == org.id, Seat.status != REMOVED, Account.email == email))
    if holder is not None:
        raise SeatError(_("%(email)s already has a seat.", email=email))
    staff = session.scalar(select(Account.id).where(Account.email == email, Account.role != Role.MEMBER))
    if staff is not None:
        # Answered like any other address (no way to learn who is staff); nothing is sent.
        log.info("organisation %s: invitation to a staff address not sent", org.id)
        return
    token = links.issue(session, INVITE_PURPOSE, None, INVITE_TTL, {"organisation_id": org.id, "email": email})
    _audit(admin, "seat_invited", org, email=email)
    link = absolute_url("organisations.invitation", token=token)
    invitee = session.scalar(select(Account.language).where(Account.email == email))
    with in_language(invitee) as lang:  # theirs if they have an account, else the admin's page's
        body = letter(_("Hello,"),
                      _("%(admin)s (%(admin_email)s) has given you a seat in %(organisation)s's DAWNS membership: full "
                        "access to our reporting and DAWNS Digest, the daily newsletter, paid for by %(organisation)s.",
                        admin=admin.name, admin_email=admin.email, organisation=org.name),
                      _("Accept it here (the link works once, for 7 days):") + "\n\n" + link,
                      _("If you were not expecting this, ignore this email."))
        send_mail(email, _("%(organisation)s invites you to DAWNS", organisation=org.name), body,
                  kind="seat_invitation", lang=lang, session=session)
    session.commit()  # the invitation and its mail together


@dataclass(frozen=True)
class Invitation:
    org: Organisation
    email: str
    account: Account | None  # the invited address's account, when it has one


def look_at_invitation(token: str) -> Invitation | None:
    """The invitation behind a link, without using it (a mail scanner's GET burns nothing)."""
    session = get_session()
    row = links.peek(session, INVITE_PURPOSE, token)
    if row is None:
        return None
    org = session.get(Organisation, row.data.get("organisation_id"))
    if org is None:
        return None
    email = row.data.get("email", "")
    account = session.scalars(select(Account).where(Account.email == email)).first()
    return Invitation(org, email, account)


def accept_invitation(token: str, *, current: Account | None, name: str | None, password: str | None,
                      newsletter_opt_in: bool) -> tuple[Account, Organisation, bool]:
    """Use the invitation: the invited address's account takes a seat. Returns (account,
    organisation, sign_in): whether the caller should sign the account in.

    The link proves the address, never an account's password: an account that has proved its
    address before is only ever entered with its own password (the reader signs in first, then
    accepts). An account that never proved its address may be a squatter's (anyone can sign up
    with anyone's address): accepting makes its owner choose a new password, which ends every
    other session of it. A new address gets a new account. Raises SeatError (the link stays
    unused: nothing is committed)."""
    session = get_session()
    row = links.use(session, INVITE_PURPOSE, token)
    if row is None:
        raise SeatError(_("This invitation has expired or has been used. Ask your organisation's admin for a new one."))
    org = session.get(Organisation, row.data.get("organisation_id"))
    email = row.data.get("email", "")
    if org is None or not email:
        session.rollback()
        raise SeatError(_("This invitation is no longer valid."))
    account = session.scalars(select(Account).where(Account.email == email)).first()
    sign_in = False
    if account is None:
        if not name or not password:
            session.rollback()
            raise SeatError(_("Enter your name and choose a password to create your account."))
        account = Account(email=email, name=name.strip(), password_hash=hash_password(password), role=Role.MEMBER,
                          created_at=utcnow(), email_verified_at=utcnow(), language=current_language())
        account.membership = Membership(newsletter_opt_in=newsletter_opt_in, created_at=account.created_at)
        session.add(account)
        session.flush()
        sign_in = True
    elif account.role != Role.MEMBER:
        session.rollback()
        raise SeatError(_("Staff accounts cannot take seats."))
    elif account.email_verified_at is not None:
        if current is None or current.id != account.id:
            session.rollback()
            raise SeatError(_("Sign in as %(email)s first, then accept the seat.", email=email))
    else:
        # Never proved: the owner of the address takes it over with a new password.
        if not password:
            session.rollback()
            raise SeatError(_("Choose a password for your account to accept the seat."))
        account.password_hash = hash_password(password)
        account.email_verified_at = utcnow()
        end_sessions(account)
        sign_in = True
    try:
        take_seat(session, org, account, "invitation", newsletter_opt_in=newsletter_opt_in)
    except SeatError:
        session.rollback()
        raise
    _withdraw_invitations(org, email)
    _audit(account, "seat_taken", org, account, how="invitation")
    session.commit()
    return account, org, sign_in


def _withdraw_invitations(org: Organisation, email: str) -> int:
    """The other live invitations of this address to this organisation stop working (on
    acceptance, removal or revocation)."""
    session = get_session()
    rows = session.scalars(select(AccountToken).where(
        AccountToken.purpose == INVITE_PURPOSE, AccountToken.used_at.is_(None),
        AccountToken.expires_at > utcnow())).all()
    now = utcnow()
    n = 0
    for r in rows:
        if r.data.get("organisation_id") == org.id and r.data.get("email") == email:
            r.used_at = now
            n += 1
    return n


def revoke_invitation(admin: Account, slug: str, email: str) -> int:
    org = managed_by(admin, slug)
    n = _withdraw_invitations(org, normalize_email(email))
    if n:
        _audit(admin, "seat_invitation_revoked", org, email=normalize_email(email))
    get_session().commit()
    return n


# --- domain claims -----------------------------------------------------------------------------

def claimable(account: Account, org: Organisation) -> bool:
    return account.role == Role.MEMBER and on_domains(org, account.email)


def claim(account: Account, slug: str, newsletter_opt_in: bool) -> str:
    """A reader whose address is on one of the organisation's domains takes a seat: at once
    when the address is proved, else after following a link sent to it. Returns "taken" or
    "sent". Raises SeatError."""
    session = get_session()
    org = by_slug(slug)
    if org is None or not claimable(account, org):
        raise SeatError(_("Seats of this organisation are for addresses on its own domains."))
    if removed_by_admin(org, account):
        raise SeatError(_("Your seat in %(name)s was removed by its admin. Ask them for an invitation.", name=org.name))
    if account.email_verified_at is not None:
        take_seat(session, org, account, "domain", newsletter_opt_in=newsletter_opt_in)
        _audit(account, "seat_taken", org, account, how="domain")
        session.commit()
        return "taken"
    links.withdraw(session, CLAIM_PURPOSE, account)
    token = links.issue(session, CLAIM_PURPOSE, account, CLAIM_TTL,
                        {"organisation_id": org.id, "email": account.email, "newsletter": newsletter_opt_in})
    link = absolute_url("organisations.confirm_claim", token=token)
    with in_language(account.language) as lang:
        body = letter(hello(account),
                      _("To take a seat in %(organisation)s's DAWNS membership, confirm that this address is yours "
                        "(the link works once, for 24 hours):", organisation=org.name) + "\n\n" + link,
                      _("If you did not ask for this, ignore this email."))
        send_mail(account.email, _("Confirm your address to join %(organisation)s on DAWNS", organisation=org.name),
                  body, kind="seat_claim_confirm", account_id=account.id, lang=lang, session=session)
    session.commit()  # the link and its mail together
    return "sent"


def removed_by_admin(org: Organisation, account: Account) -> bool:
    """A seat the admin removed is not claimed back by domain (an invitation gives it again)."""
    session = get_session()
    removed = session.scalar(select(Seat.id).where(Seat.organisation_id == org.id, Seat.account_id == account.id,
                                                   Seat.status == REMOVED).limit(1))
    return removed is not None and live_seat_of(org, account) is None


def live_seat_of(org: Organisation, account: Account) -> Seat | None:
    return live_seat(get_session(), org, account)


def take_own_seat(admin: Account, slug: str) -> None:
    """The organisation's admin takes a seat for themselves (buying seats gives the buyer none)."""
    session = get_session()
    org = managed_by(admin, slug)
    take_seat(session, org, admin, "admin")
    _audit(admin, "seat_taken", org, admin, how="admin")
    session.commit()


def look_at_claim(token: str) -> Organisation | None:
    session = get_session()
    row = links.peek(session, CLAIM_PURPOSE, token)
    return session.get(Organisation, row.data.get("organisation_id")) if row is not None else None


def confirm_claim(token: str, current: Account) -> tuple[Account, Organisation]:
    """Use the link, signed in as the account that asked for it: the address is proved and the
    seat taken (if its address is still the account's and still on the organisation's domains).
    Following the link never signs anyone in: an account squatting someone's address would
    otherwise receive its owner. Raises SeatError."""
    session = get_session()
    peeked = links.peek(session, CLAIM_PURPOSE, token)
    if peeked is None or peeked.account_id != current.id:
        raise SeatError(_("This link is for another account, has expired or has been used. Sign in as the account "
                        "that asked for it, or claim your seat again."))
    row = links.use(session, CLAIM_PURPOSE, token)
    if row is None or row.account_id is None:
        raise SeatError(_("This link has expired or has been used. Claim your seat again to get a new one."))
    account = session.get(Account, row.account_id)
    org = session.get(Organisation, row.data.get("organisation_id"))
    if account is None or org is None or account.email != row.data.get("email") or not claimable(account, org) \
            or removed_by_admin(org, account):
        session.rollback()
        raise SeatError(_("This link no longer matches your account's address."))
    account.email_verified_at = account.email_verified_at or utcnow()
    try:
        take_seat(session, org, account, "domain", newsletter_opt_in=bool(row.data.get("newsletter", True)))
    except SeatError:
        session.rollback()
        raise
    _audit(account, "seat_taken", org, account, how="domain")
    session.commit()
    return account, org


# --- removal -----------------------------------------------------------------------------------

def remove(admin: Account, slug: str, seat_id: int) -> str:
    """The organisation's admin takes a seat back. Returns the reader's email."""
    session = get_session()
    org = managed_by(admin, slug)
    seat = session.get(Seat, seat_id)
    if seat is None or seat.organisation_id != org.id or seat.status == REMOVED:
        raise SeatError(_("No such seat."))
    reader = session.get(Account, seat.account_id)
    remove_seat(session, seat)
    if reader is not None:
        _withdraw_invitations(org, reader.email)
    _audit(admin, "seat_removed", org, reader)
    session.commit()
    return reader.email if reader else ""


def domains_hint(org: Organisation) -> str:
    return ", ".join(f"@{d}" for d in org.domains or [])

