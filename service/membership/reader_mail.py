"""The reader mail tied to membership and billing events (SPEC "Readers"): welcome, payment
failed, membership ended, yearly renewal reminder.

Each function queues one message with `send_mail` in the caller's session, so the message
commits with the change (or the Stripe event outcome) that causes it and a rollback drops it.
The texts live here, in one place, in the publisher's voice; `send_mail` builds the HTML part.
Membership calls the first and the third (`service.recompute`), billing the other two
(`billing.webhooks`): this module imports nothing of billing.
"""
from __future__ import annotations

from datetime import datetime

from sqlalchemy.orm import Session

from ..domain.membership import MembershipStatus
from ..domain.money import format_amount
from ..mail import send_mail
from ..models import Account, Membership
from ..urls import absolute_url

SIGNATURE = "The DAWNS team"


def _date(value: datetime) -> str:
    return f"{value.day} {value:%B %Y}"


def _hello(account: Account) -> str:
    name = (account.name or "").strip()
    return f"Hello {name}," if name else "Hello,"


def welcome(session: Session, account: Account, membership: Membership, *, back: bool = False) -> None:
    """The member has just become entitled (a paid membership, a comp or an organisation's seat);
    `back`: they were a paying member before (a card fixed, a rejoin)."""
    if membership.status == MembershipStatus.ORGANISATION and membership.organisation is not None:
        how = f"{' '.join(membership.organisation.name.split())} gives you a seat, so you"
    elif membership.status == MembershipStatus.COMPED:
        how = "We have given you a complimentary membership, so you"
    elif back:
        how = "Your membership is active again. You"
    else:
        how = "Thank you for joining. You"
    digest = ("DAWNS Digest, our newsletter, comes to this address too."
              if membership.newsletter_opt_in else
              "You can also receive DAWNS Digest, our newsletter: switch it on from your account.")
    body = (f"{_hello(account)}\n\n"
            f"{'Welcome back' if back else 'Welcome to DAWNS'}. {how} can read all our premium stories: the "
            f"reporting from the places crises reach first, in full.\n\n"
            f"{digest}\n\n"
            f"Your membership, your level and your billing are in your account:\n{absolute_url('members.account')}\n\n"
            f"{SIGNATURE}\n")
    send_mail(account.email, "Welcome back to DAWNS" if back else "Welcome to DAWNS", body, kind="welcome",
              account_id=account.id, session=session)


def membership_ended(session: Session, account: Account, membership: Membership) -> None:
    """A paid membership has moved to canceled or lapsed: access has stopped."""
    lapsed = membership.status == MembershipStatus.LAPSED
    why = ("Your payments did not go through, so your membership has ended"
           if lapsed else "Your membership has ended")
    body = (f"{_hello(account)}\n\n"
            f"{why} and premium stories are closed to you for now. Thank you for the time you spent with us: "
            f"members pay for the reporting everyone else reads.\n\n"
            f"You are welcome back whenever you like:\n{absolute_url('members.account')}\n\n"
            f"{SIGNATURE}\n")
    send_mail(account.email, "Your DAWNS membership has ended", body, kind="membership_ended",
              account_id=account.id, session=session)


def payment_failed(session: Session, account: Account, *, amount: int | None, currency: str | None,
                   next_attempt: datetime | None) -> None:
    """A payment for the member's subscription failed (`invoice.payment_failed`). The link goes
    to a page of ours that opens the Customer Portal when clicked (its sessions expire)."""
    what = f"your payment of {format_amount(amount, currency or 'usd')}" if amount else "your last payment"
    retry = (f" We will try again on {_date(next_attempt)}." if next_attempt is not None else "")
    body = (f"{_hello(account)}\n\n"
            f"We could not take {what} for your DAWNS membership.{retry} Your access stays open meanwhile.\n\n"
            f"To update your card, open your billing page:\n{absolute_url('billing.fix_payment')}\n\n"
            f"If your card has not changed, there is nothing to do: your bank may simply have declined it once.\n\n"
            f"{SIGNATURE}\n")
    send_mail(account.email, "Your DAWNS payment did not go through", body, kind="payment_failed",
              account_id=account.id, session=session)


def renewal_reminder(session: Session, account: Account, *, on: datetime | None, amount: int | None,
                     currency: str | None) -> None:
    """A yearly membership renews soon (`invoice.upcoming`)."""
    when = f"on {_date(on)}" if on is not None else "soon"
    price = f" for {format_amount(amount, currency or 'usd')}" if amount is not None else ""
    body = (f"{_hello(account)}\n\n"
            f"Your yearly DAWNS membership renews {when}{price}. There is nothing to do to keep reading.\n\n"
            f"To change your level or your card, or to stop the renewal, go to your account:\n"
            f"{absolute_url('members.account')}\n\n"
            f"Thank you for another year of support.\n\n"
            f"{SIGNATURE}\n")
    send_mail(account.email, "Your DAWNS membership renews soon", body, kind="renewal_reminder",
              account_id=account.id, session=session)
