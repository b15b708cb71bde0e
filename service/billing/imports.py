"""Member import from CSV (SPEC "Insight and operations"): `flask members import FILE [--dry-run]`
and `/staff/admin/import` call `run_import`.

Three formats are read, told apart by their header:

- **ghost**: Ghost's members export (`email`, `name`, `note`, `subscribed_to_emails`,
  `complimentary_plan`, `stripe_customer_id` (`cus_…` or `auto`), `created_at`, `deleted_at`,
  `labels`; other columns are ignored);
- **mailchimp**: a Mailchimp audience export (`Email Address`, `First Name`, `Last Name`,
  `NOTES`, `TAGS`, `OPTIN_TIME`, …; an unsubscribed or cleaned export, told by its
  `UNSUB_TIME` / `CLEAN_TIME`, imports readers who did not want DAWNS Digest);
- **dawns**: this service's own staff CSV export (`membership/exports.py`), so that an export
  re-imported into an empty database gives every member back: level and paid time (from
  Stripe), comp and its end, DAWNS choice, Stripe link, join date, language.

Every cell is untrusted: lengths are checked, names are one line without control characters,
dates and booleans are parsed strictly. A dry run validates every row (reporting each error
with its 1-based line number in the file, the header being line 1) and writes nothing. A real
run imports the valid rows, one transaction per row, and is idempotent: a member is matched by
normalised email, and a row whose values are already held changes nothing and writes nothing.

Trust: staff accounts are never imported into; new accounts get an unusable random password
(they sign in with an emailed link or a reset) and nobody is mailed (reader mail is quiet for
the whole run). A Stripe customer named by the file is an explicit staff decision, so it is
linked (never one that belongs to another account or an organisation), its subscriptions are
read from Stripe and the membership recomputed, every change recorded in the membership
history with source `import`.
"""
from __future__ import annotations

import csv
import io
import re
import secrets
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from typing import Any

from email_validator import EmailNotValidError, validate_email
from flask import current_app
from sqlalchemy import select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from ..accounts.services import end_sessions, hash_password, normalize_email
from ..db import utcnow
from ..domain.membership import MembershipStatus, Role
from ..i18n import known
from ..membership import catalogue, history
from ..membership.service import QUIET_READER_MAIL, recompute
from ..models import Account, AuditLog, Membership, StripeCustomer
from .gateway import BillingError, BillingGateway
from .lifecycle import link_customer, listed_differs, sync_subscription

GHOST, MAILCHIMP, DAWNS = "ghost", "mailchimp", "dawns export"
MAX_ROWS = 100_000
MAX_NAME, MAX_NOTE, MAX_LABEL, MAX_LABELS, MAX_REASON = 200, 2000, 100, 50, 500
GHOST_COMP_REASON = "Imported: complimentary plan"
DAWNS_COMP_REASON = "Imported"
IMPORTED, IMPORT_UPDATED = "member_imported", "member_import_updated"

_CONTROL = re.compile(r"[\x00-\x1f\x7f\u0085\u2028\u2029]")
_CUSTOMER = re.compile(r"^cus_[A-Za-z0-9]{1,250}$")
_TRUE = {"true", "yes", "y", "1", "t"}
_FALSE = {"false", "no", "n", "0", "f"}
# Cells the staff export neutralised with a leading apostrophe (exports.FORMULA_STARTS).
_NEUTRALISED = ("=", "+", "-", "@", "\t", "\r")


@dataclass
class Problem:
    line: int
    message: str


@dataclass
class Row:
    line: int
    email: str        # normalised (stripped, lowercased): how members are matched
    raw_email: str    # as written (Stripe's email filter is case-sensitive)
    name: str | None = None            # None: the file says nothing
    note: str = ""
    labels: list[str] = field(default_factory=list)
    opt_in: bool | None = None
    complimentary: bool = False        # Ghost: a comp with no end
    comped_at: datetime | None = None  # dawns export: the comp exactly
    comped_until: datetime | None = None
    comp_reason: str | None = None
    customer: str | None = None        # cus_… or "auto"
    created_at: datetime | None = None
    language: str | None = None
    level: str | None = None           # dawns export: what Stripe should give back
    deleted: bool = False              # Ghost: deleted there, not imported


@dataclass
class Report:
    dry_run: bool
    format: str | None = None
    rows: int = 0
    created: int = 0
    updated: int = 0
    unchanged: int = 0
    skipped: int = 0
    linked: int = 0
    errors: list[Problem] = field(default_factory=list)
    notes: list[Problem] = field(default_factory=list)
    stopped: str | None = None

    def summary(self) -> str:
        if self.dry_run:
            return (f"dry run, nothing written: {self.rows} row(s) read, {self.created} would be created, "
                    f"{self.updated} match an existing member, {self.skipped} skipped, {len(self.errors)} error(s)")
        return (f"created {self.created}, updated {self.updated}, unchanged {self.unchanged}, "
                f"skipped {self.skipped} ({len(self.errors)} error(s)), Stripe customers linked {self.linked}")


class RowFailed(Exception):
    """This row cannot be imported; the message says why (shown with its line)."""


# --- reading the file --------------------------------------------------------------------------

def _records(text: str) -> Iterator[tuple[int, list[str]]]:
    """(line where the record starts, cells): a quoted cell may span lines."""
    reader = csv.reader(io.StringIO(text, newline=""))
    start = 1
    for cells in reader:
        yield start, cells
        start = reader.line_num + 1


def detect(header: list[str]) -> str | None:
    names = {h.strip().lower() for h in header}
    if "email address" in names:
        return MAILCHIMP
    if "email" not in names:
        return None
    if names & {"newsletter_opt_in", "comped_at", "newsletter_status", "entitled"}:
        return DAWNS
    return GHOST


def parse(data: bytes | str, report: Report) -> list[Row]:
    """The file's rows, validated one by one; problems go to the report (with line numbers)."""
    if isinstance(data, bytes):
        try:
            data = data.decode("utf-8-sig")
        except UnicodeDecodeError:
            report.errors.append(Problem(1, "The file is not UTF-8 text (save it as CSV UTF-8)."))
            return []
    records = _records(data)
    try:
        first = next(records, None)
        if first is None:
            report.errors.append(Problem(1, "The file is empty."))
            return []
        header = [h.strip().lower() for h in first[1]]
        fmt = detect(header)
        report.format = fmt
        if fmt is None:
            report.errors.append(Problem(1, "Unknown format: no email column (expected Ghost's \"email\", "
                                            "Mailchimp's \"Email Address\" or this service's export)."))
            return []
        index: dict[str, int] = {}
        for i, name in enumerate(header):
            index.setdefault(name, i)
        rows: list[Row] = []
        seen: dict[str, int] = {}
        customers: dict[str, int] = {}
        for line, cells in records:
            if not any(c.strip() for c in cells):
                continue  # a blank line
            report.rows += 1
            if report.rows > MAX_ROWS:
                report.errors.append(Problem(line, f"More than {MAX_ROWS:,} rows: split the file."))
                break
            try:
                row = _row(fmt, line, _Cells(index, cells, fmt == DAWNS))
            except RowFailed as exc:
                report.errors.append(Problem(line, str(exc)))
                continue
            if row.email in seen:
                report.errors.append(Problem(line, f"Duplicate email {row.email}: already on line {seen[row.email]}."))
                continue
            seen[row.email] = line
            if row.customer and row.customer != "auto":
                if row.customer in customers:
                    report.errors.append(Problem(line, f"Duplicate stripe_customer_id {row.customer}: already on "
                                                       f"line {customers[row.customer]}."))
                    continue
                customers[row.customer] = line
            rows.append(row)
    except csv.Error as exc:
        report.errors.append(Problem(report.rows + 2 if report.format else 1, f"Not a readable CSV file: {exc}."))
        return []
    return rows


class _Cells:
    def __init__(self, index: dict[str, int], cells: list[str], neutralised: bool) -> None:
        self.index, self.cells, self.neutralised = index, cells, neutralised

    def has(self, name: str) -> bool:
        return name in self.index

    def __getitem__(self, name: str) -> str:
        i = self.index.get(name)
        value = self.cells[i].strip() if i is not None and i < len(self.cells) else ""
        if self.neutralised and len(value) > 1 and value[0] == "'" and value[1] in _NEUTRALISED:
            value = value[1:]  # the export's formula guard, undone
        return value


def _email(value: str) -> tuple[str, str]:
    if not value:
        raise RowFailed("Missing email.")
    if len(value) > 320 or _CONTROL.search(value):
        raise RowFailed("Invalid email.")
    try:
        validate_email(value, check_deliverability=False)
    except EmailNotValidError:
        raise RowFailed(f"Invalid email {_shown(value)}.") from None
    return normalize_email(value), value


def _shown(value: str, limit: int = 60) -> str:
    """A cell quoted in a message: one line, cut short."""
    text = _CONTROL.sub("?", value)
    return repr(text if len(text) <= limit else text[:limit] + "…")


def _name(value: str) -> str | None:
    if not value:
        return None
    if _CONTROL.search(value):
        raise RowFailed("The name has control characters or line breaks: it must be one line.")
    if len(value) > MAX_NAME:
        raise RowFailed(f"The name is longer than {MAX_NAME} characters.")
    return value


def _bool(value: str, column: str) -> bool | None:
    low = value.lower()
    if not low:
        return None
    if low in _TRUE:
        return True
    if low in _FALSE:
        return False
    raise RowFailed(f"Bad boolean in {column}: {_shown(value)} (true or false).")


def _date(value: str, column: str, *, past: bool = True) -> datetime | None:
    if not value:
        return None
    try:
        when = datetime.fromisoformat(value)
    except ValueError:
        raise RowFailed(f"Bad date in {column}: {_shown(value)} (ISO 8601, e.g. 2024-05-01T10:00:00Z).") from None
    if when.tzinfo is None:
        when = when.replace(tzinfo=timezone.utc)
    when = when.astimezone(timezone.utc)
    if when.year < 1990 or (past and when > utcnow() + timedelta(days=1)):
        raise RowFailed(f"Bad date in {column}: {_shown(value)} is out of range.")
    return when


def _customer(value: str) -> str | None:
    if not value:
        return None
    if value.lower() == "auto":
        return "auto"
    if not _CUSTOMER.match(value):
        raise RowFailed(f"Bad stripe_customer_id {_shown(value)}: a Stripe customer id (cus_…) or auto.")
    return value


def _note(value: str) -> str:
    value = value.replace("\x00", "")
    if len(value) > MAX_NOTE:
        raise RowFailed(f"The note is longer than {MAX_NOTE} characters.")
    return value


def _labels(value: str) -> list[str]:
    labels: dict[str, None] = {}  # in order, each once
    for part in value.split(","):
        label = _CONTROL.sub(" ", part).strip().strip('"').strip()
        if not label or label in labels:
            continue
        if len(label) > MAX_LABEL:
            raise RowFailed(f"A label is longer than {MAX_LABEL} characters.")
        labels[label] = None
        if len(labels) > MAX_LABELS:
            raise RowFailed(f"More than {MAX_LABELS} labels.")
    return list(labels)


def _row(fmt: str, line: int, c: _Cells) -> Row:
    if fmt == MAILCHIMP:
        email, raw = _email(c["email address"])
        name = " ".join(p for p in (_name(c["first name"]), _name(c["last name"])) if p) or None
        if name is not None:
            _name(name)
        unsubscribed = bool(c["unsub_time"] or c["clean_time"])
        return Row(line, email, raw, name=name, note=_note(c["notes"]), labels=_labels(c["tags"]),
                   opt_in=not unsubscribed, created_at=_date(c["optin_time"], "OPTIN_TIME"))
    email, raw = _email(c["email"])
    row = Row(line, email, raw, name=_name(c["name"]), note=_note(c["note"]), labels=_labels(c["labels"]),
              customer=_customer(c["stripe_customer_id"]), created_at=_date(c["created_at"], "created_at"))
    if fmt == GHOST:
        row.opt_in = _bool(c["subscribed_to_emails"], "subscribed_to_emails")
        row.complimentary = bool(_bool(c["complimentary_plan"], "complimentary_plan"))
        row.deleted = _date(c["deleted_at"], "deleted_at") is not None
        return row
    # This service's export.
    row.opt_in = _bool(c["newsletter_opt_in"], "newsletter_opt_in")
    row.comped_at = _date(c["comped_at"], "comped_at")
    row.comped_until = _date(c["comped_until"], "comped_until", past=False)
    reason = c["comp_reason"]
    if len(reason) > MAX_REASON:
        raise RowFailed(f"The comp_reason is longer than {MAX_REASON} characters.")
    row.comp_reason = reason or None
    if row.comped_until is not None and row.comped_at is None:
        raise RowFailed("comped_until without comped_at.")
    if c["language"]:
        row.language = known(c["language"])
        if row.language is None or row.language != c["language"].lower():
            raise RowFailed(f"Unknown language {_shown(c['language'])} (en, fr or ar).")
    level = c["level"]
    row.level = level[:100] or None
    return row


# --- checks against the database (dry run and real run alike) ----------------------------------

def check(session: Session, rows: list[Row], report: Report) -> list[Row]:
    """Rows that may be imported: never into a staff account, never with another's customer."""
    staff = set(session.scalars(select(Account.email).where(Account.role != Role.MEMBER)))
    named = [r.customer for r in rows if r.customer and r.customer != "auto"]
    owners: dict[str, tuple[int | None, int | None, str | None]] = {}
    for start in range(0, len(named), 500):
        chunk = named[start:start + 500]
        for stripe_id, account_id, org_id, email in session.execute(
                select(StripeCustomer.stripe_id, StripeCustomer.account_id, StripeCustomer.organisation_id,
                       Account.email).outerjoin(Account, Account.id == StripeCustomer.account_id)
                .where(StripeCustomer.stripe_id.in_(chunk))):
            owners[stripe_id] = (account_id, org_id, email)
    ok = []
    for row in rows:
        if row.email in staff:
            report.errors.append(Problem(row.line, f"{row.email} is a staff account: staff accounts are never "
                                                   "imported into."))
            continue
        owner = owners.get(row.customer or "")
        if owner is not None:
            problem = _foreign(row.customer or "", owner[0], owner[1], owner[2], row.email)
            if problem:
                report.errors.append(Problem(row.line, problem))
                continue
        ok.append(row)
    return ok


def _foreign(customer: str, account_id: int | None, org_id: int | None, email: str | None, row_email: str) -> str | None:
    if org_id is not None:
        return f"Stripe customer {customer} is an organisation's: not linked to a member."
    if account_id is not None and email != row_email:
        return f"Stripe customer {customer} belongs to another account (member {account_id}): not linked."
    return None


# --- the run -----------------------------------------------------------------------------------

def run_import(session: Session, gateway: BillingGateway, data: bytes | str, *, dry_run: bool,
               actor: Account | None = None, file_name: str | None = None) -> Report:
    report = Report(dry_run=dry_run)
    rows = parse(data, report)
    rows = check(session, rows, report) if rows else rows
    deleted = [r for r in rows if r.deleted]
    rows = [r for r in rows if not r.deleted]
    for r in deleted:
        report.notes.append(Problem(r.line, "Deleted in Ghost (deleted_at): not imported."))
    report.skipped = len(deleted) + len(report.errors)
    named = [r for r in rows if r.customer]
    if named and not current_app.config.get("STRIPE_SECRET_KEY"):
        report.notes.append(Problem(named[0].line, f"{len(named)} row(s) name a Stripe customer, but STRIPE_SECRET_KEY "
                                                   "is not set: the real run would stop at the first of them."))
    if dry_run:
        existing = _existing(session, [r.email for r in rows])
        report.updated = sum(1 for r in rows if r.email in existing)
        report.created = len(rows) - report.updated
        session.rollback()  # only reads happened: nothing is written
        return report
    if any(r.customer for r in rows):
        try:  # a new STRIPE_PRICE_ID joins the catalogue before anyone is judged (as reconcile)
            catalogue.ensure(session, gateway)
            session.commit()
        except BillingError as exc:
            session.rollback()
            report.stopped = f"Stripe could not be reached ({exc.detail}): nothing was imported. Run it again."
            report.skipped += len(rows)
            return report
    session.info[QUIET_READER_MAIL] = True  # an import mails no one
    try:
        for i, row in enumerate(rows):
            try:
                outcome = _import_row(session, gateway, row, actor, report)
            except RowFailed as exc:
                session.rollback()
                report.errors.append(Problem(row.line, str(exc)))
                report.skipped += 1
                continue
            except BillingError as exc:
                session.rollback()
                if exc.retryable:
                    report.stopped = (f"Stripe could not be reached at line {row.line} ({exc.detail}): that row and "
                                      "the ones after it were not imported. Run the import again: the rows already "
                                      "imported stay as they are.")
                    report.skipped += len(rows) - i
                    break
                report.errors.append(Problem(row.line, f"Stripe: {exc.detail}"))
                report.skipped += 1
                continue
            except IntegrityError:
                session.rollback()
                report.errors.append(Problem(row.line, f"{row.email} was created by someone else meanwhile: run "
                                                       "the import again."))
                report.skipped += 1
                continue
            setattr(report, outcome, getattr(report, outcome) + 1)
        if report.created or report.updated:
            session.add(AuditLog(actor_id=actor.id if actor else None, actor_email=actor.email if actor else "cli",
                                 action="members_import",
                                 details={"file": (file_name or "")[:200], "format": report.format,
                                          "created": report.created, "updated": report.updated,
                                          "unchanged": report.unchanged, "skipped": report.skipped}))
            session.commit()
    finally:
        session.info.pop(QUIET_READER_MAIL, None)
    return report


def _existing(session: Session, emails: list[str]) -> set[str]:
    found: set[str] = set()
    for start in range(0, len(emails), 500):
        found.update(session.scalars(select(Account.email).where(Account.email.in_(emails[start:start + 500]))))
    return found


def _find_customer(gateway: BillingGateway, row: Row, report: Report) -> dict[str, Any] | None:
    """The Stripe customer the row names (read before any lock is taken), or None."""
    if row.customer is None:
        return None
    if row.customer == "auto":
        found = [c for c in gateway.find_customers(row.raw_email) if not c.get("deleted")]
        if not found and row.raw_email != row.email:
            found = [c for c in gateway.find_customers(row.email) if not c.get("deleted")]
        if len(found) > 1:
            report.notes.append(Problem(row.line, f"{len(found)} Stripe customers have the email {row.email}: none "
                                                  "linked (name one with its cus_ id)."))
            return None
        if not found:
            report.notes.append(Problem(row.line, f"No Stripe customer has the email {row.email}: none linked."))
            return None
        return found[0]
    try:
        customer = gateway.retrieve_customer(row.customer)
    except BillingError as exc:
        if exc.retryable:
            raise
        raise RowFailed(f"Stripe has no customer {row.customer}.") from None
    if customer.get("deleted"):
        raise RowFailed(f"Stripe customer {row.customer} is deleted.")
    return customer


def _subscriptions(gateway: BillingGateway, customer_id: str) -> list[dict[str, Any]]:
    subs: list[dict[str, Any]] = []
    after: str | None = None
    while True:
        page = gateway.list_subscriptions(starting_after=after, limit=100, customer=customer_id).obj
        data = page.get("data") or []
        subs += data
        if not page.get("has_more") or not data:
            return subs
        after = data[-1]["id"]


def _state(account: Account, m: Membership | None) -> tuple:
    """What the import may change, to tell an update from a row already held."""
    return (account.name, account.created_at, account.language,
            None if m is None else (m.status, m.level_name, m.paid_through, m.cancel_at_period_end, m.comped_at,
                                    m.comped_until, m.comp_reason, m.newsletter_opt_in, m.newsletter_desired,
                                    m.stripe_customer_id))


def _last_import_details(session: Session, account_id: int) -> dict[str, Any]:
    details = session.scalar(select(AuditLog.details).where(
        AuditLog.target_account_id == account_id, AuditLog.action.in_([IMPORTED, IMPORT_UPDATED]))
        .order_by(AuditLog.id.desc()).limit(1))
    return details or {}


def _import_row(session: Session, gateway: BillingGateway, row: Row, actor: Account | None, report: Report) -> str:
    """One row, in one transaction; returns created | updated | unchanged."""
    # Stripe first, outside any lock.
    customer = _find_customer(gateway, row, report)
    customer_id = customer["id"] if customer else None
    subs = _subscriptions(gateway, customer_id) if customer_id else []

    account = session.scalars(select(Account).where(Account.email == row.email)).first()
    if account is not None and account.role != Role.MEMBER:
        raise RowFailed(f"{row.email} is a staff account: staff accounts are never imported into.")
    if customer_id:
        owner = session.execute(select(StripeCustomer.account_id, StripeCustomer.organisation_id, Account.email)
                                .outerjoin(Account, Account.id == StripeCustomer.account_id)
                                .where(StripeCustomer.stripe_id == customer_id)).first()
        if owner is not None:
            problem = _foreign(customer_id, owner[0], owner[1], owner[2], row.email)
            if problem:
                raise RowFailed(problem)
    created = account is None
    if not created and customer_id:
        other = session.scalar(select(StripeCustomer.stripe_id).where(
            StripeCustomer.account_id == account.id, StripeCustomer.stripe_id != customer_id,
            StripeCustomer.deleted.is_(False)).limit(1))
        if other is not None:
            raise RowFailed(f"{row.email} already has Stripe customer {other}: {customer_id} not linked "
                            "(one customer per member; merge them in Stripe first).")
    before = None if created else _state(account, account.membership)
    if created:
        account = _create(session, row)
    elif account.email_verified_at is None and (customer_id or row.complimentary or row.comped_at is not None):
        # Anyone can join with anyone's address: an account that never proved it may be a
        # squatter's, waiting for the real reader's membership. What the file brings (a Stripe
        # customer, a comp) goes to the address's owner: the account's password is replaced and
        # its sessions end; the reader signs in with an emailed link.
        account.password_hash = hash_password(secrets.token_urlsafe(32))
        end_sessions(account)
        report.notes.append(Problem(row.line, f"{row.email} had an account that never proved its address: its "
                                              "password was replaced and its sessions ended; the reader signs "
                                              "in with an emailed link."))
    was_linked = not created and customer_id is not None and session.scalar(
        select(StripeCustomer.account_id).where(StripeCustomer.stripe_id == customer_id)) == account.id

    with history.source(session, history.IMPORT):
        # Subscriptions in the usual lock order (subscription, customer, membership): the sync
        # links the customer to the account as it applies them.
        for obj in subs:
            if listed_differs(session, obj):
                sync_subscription(session, gateway, obj["id"], customer_id, account)
        if customer_id:
            linked = link_customer(session, customer_id, account, customer.get("email"))
            if linked.account_id != account.id:
                raise RowFailed(f"Stripe customer {customer_id} could not be linked to {row.email}.")
            if not was_linked:
                report.linked += 1
        if not created:
            _update(session, account, row, report)
        membership = recompute(session, account)
    if row.level and membership.level_name != row.level:
        report.notes.append(Problem(row.line, f"The file says level {row.level!r}; Stripe gives "
                                              f"{membership.level_name or 'none'}."))

    details: dict[str, Any] = {"source": report.format, "note": row.note, "labels": row.labels}
    if created:
        if customer_id:
            details["stripe_customer"] = customer_id
        if membership.comped_at is not None:
            details["comp"] = membership.comp_reason
        _audit(session, actor, IMPORTED, account, details)
        session.commit()
        return "created"
    last = _last_import_details(session, account.id)
    notes_changed = (last.get("note") or "", list(last.get("labels") or [])) != (row.note, row.labels)
    if before == _state(account, account.membership) and not notes_changed:
        session.rollback()  # nothing to keep (the row locks go with it)
        return "unchanged"
    _audit(session, actor, IMPORT_UPDATED, account, details)
    session.commit()
    return "updated"


def _audit(session: Session, actor: Account | None, action: str, account: Account, details: dict[str, Any]) -> None:
    session.add(AuditLog(actor_id=actor.id if actor else None, actor_email=actor.email if actor else "cli",
                         action=action, target_account_id=account.id, details=details))


def _create(session: Session, row: Row) -> Account:
    now = utcnow()
    joined = row.created_at or now
    account = Account(email=row.email, name=row.name or "", role=Role.MEMBER, created_at=joined,
                      # Unusable: nobody knows it; they sign in with an emailed link or a reset.
                      password_hash=hash_password(secrets.token_urlsafe(32)), language=row.language)
    membership = Membership(status=MembershipStatus.PENDING, created_at=joined, status_changed_at=joined,
                            # No stated choice is no consent.
                            newsletter_opt_in=bool(row.opt_in))
    if row.complimentary:
        membership.comped_at, membership.comped_until, membership.comp_reason = now, None, GHOST_COMP_REASON
    elif row.comped_at is not None:
        membership.comped_at, membership.comped_until = row.comped_at, row.comped_until
        membership.comp_reason = row.comp_reason or DAWNS_COMP_REASON
    account.membership = membership
    session.add(account)
    session.flush()
    return account


def _update(session: Session, account: Account, row: Row, report: Report) -> None:
    """An existing reader: what the file says that we do not hold yet. It never re-subscribes a
    reader who opted out of DAWNS Digest here, and never revokes a comp."""
    from ..membership.service import membership_for

    membership = membership_for(session, account)  # locked (after the subscriptions: lock order)
    if row.name and not (account.name or "").strip():
        account.name = row.name  # a name the reader or staff gave is theirs: only an empty one is filled
    if row.created_at is not None and row.created_at < _aware(account.created_at):
        account.created_at = row.created_at
        membership.created_at = row.created_at
    if row.language and not account.language:
        account.language = row.language
    if row.opt_in is False and membership.newsletter_opt_in:
        membership.newsletter_opt_in = False
    elif row.opt_in and not membership.newsletter_opt_in:
        report.notes.append(Problem(row.line, f"{row.email} opted out of DAWNS Digest here: kept opted out."))
    now = utcnow()
    # A comp is only ever given or lengthened, never shortened, replaced or revoked: an old file
    # does not undo what staff granted since.
    held_until = _aware(membership.comped_until)
    open_ended = membership.comped_at is not None and held_until is None
    if row.complimentary:
        if not open_ended:
            membership.comped_at, membership.comped_until, membership.comp_reason = now, None, GHOST_COMP_REASON
    elif row.comped_at is not None and not open_ended:
        longer = row.comped_until is None or held_until is None or row.comped_until > held_until
        if membership.comped_at is None or longer:
            membership.comped_at, membership.comped_until = row.comped_at, row.comped_until
            membership.comp_reason = row.comp_reason or DAWNS_COMP_REASON


def _aware(value: datetime | None) -> datetime | None:
    if value is None or value.tzinfo is not None:
        return value
    return value.replace(tzinfo=timezone.utc)
