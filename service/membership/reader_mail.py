"""The reader mail tied to membership and billing events (SPEC "Readers"): welcome, payment
failed, membership ended, yearly renewal reminder.

Each function queues one message with `send_mail` in the caller's session, so the message
commits with the change (or the Stripe event outcome) that causes it and a rollback drops it.
The texts live here, in one place, in the publisher's voice, in the reader's language
(`accounts.language`); `send_mail` builds the HTML part.
Membership calls the first and the third (`service.recompute`), billing the other two
(`billing.webhooks`): this module imports nothing of billing.
"""
from __future__ import annotations

from datetime import datetime

from sqlalchemy.orm import Session

from ..domain.membership import MembershipStatus
from ..i18n import day, gettext as _, in_language, money
from ..mail import send_mail
from ..models import Account, Membership
from ..urls import absolute_url


def hello(account: Account) -> str:
    """The greeting of every reader message, in the language being written."""
    name = " ".join((account.name or "").split())
    return _("Hello %(name)s,", name=name) if name else _("Hello,")


def signed() -> str:
    return _("The DAWNS team")


def letter(*paragraphs: str) -> str:
    """Paragraphs, a blank line between them, ending with the signature."""
    return "\n\n".join([*paragraphs, signed()]) + "\n"


def welcome(session: Session, account: Account, membership: Membership, *, back: bool = False) -> None:
    """The member has just become entitled (a paid membership, a comp or an organisation's seat);
    `back`: they were a paying member before (a card fixed, a rejoin)."""
    with in_language(account.language) as lang:
        if membership.status == MembershipStatus.ORGANISATION and membership.organisation is not None:
            opening = _("Welcome to DAWNS. %(organisation)s gives you a seat, so you can read all our premium "
                        "stories: the reporting from the places crises reach first, in full.",
                        organisation=" ".join(membership.organisation.name.split()))
        elif membership.status == MembershipStatus.COMPED:
            opening = _("Welcome to DAWNS. We have given you a complimentary membership, so you can read all our "
                        "premium stories: the reporting from the places crises reach first, in full.")
        elif back:
            opening = _("Welcome back. Your membership is active again. You can read all our premium stories: the "
                        "reporting from the places crises reach first, in full.")
        else:
            opening = _("Welcome to DAWNS. Thank you for joining. You can read all our premium stories: the "
                        "reporting from the places crises reach first, in full.")
        digest = (_("DAWNS Digest, our newsletter, comes to this address too.") if membership.newsletter_opt_in else
                  _("You can also receive DAWNS Digest, our newsletter: switch it on from your account."))
        body = letter(hello(account), opening, digest,
                      _("Your membership, your level and your billing are in your account:") + "\n"
                      + absolute_url("members.account"))
        subject = _("Welcome back to DAWNS") if back else _("Welcome to DAWNS")
        send_mail(account.email, subject, body, kind="welcome", account_id=account.id, lang=lang, session=session)


def membership_ended(session: Session, account: Account, membership: Membership) -> None:
    """A paid membership has moved to canceled or lapsed: access has stopped."""
    with in_language(account.language) as lang:
        if membership.status == MembershipStatus.LAPSED:
            why = _("Your payments did not go through, so your membership has ended and premium stories are "
                    "closed to you for now.")
        else:
            why = _("Your membership has ended and premium stories are closed to you for now.")
        body = letter(hello(account),
                      why + " " + _("Thank you for the time you spent with us: members pay for the reporting "
                                    "everyone else reads."),
                      _("You are welcome back whenever you like:") + "\n" + absolute_url("members.account"))
        send_mail(account.email, _("Your DAWNS membership has ended"), body, kind="membership_ended",
                  account_id=account.id, lang=lang, session=session)


def payment_failed(session: Session, account: Account, *, amount: int | None, currency: str | None,
                   next_attempt: datetime | None) -> None:
    """A payment for the member's subscription failed (`invoice.payment_failed`). The link goes
    to a page of ours that opens the Customer Portal when clicked (its sessions expire)."""
    with in_language(account.language) as lang:
        if amount:
            what = _("We could not take your payment of %(amount)s for your DAWNS membership.",
                     amount=money(amount, currency or "usd"))
        else:
            what = _("We could not take your last payment for your DAWNS membership.")
        if next_attempt is not None:
            what += " " + _("We will try again on %(date)s.", date=day(next_attempt))
        what += " " + _("Your access stays open meanwhile.")
        body = letter(hello(account), what,
                      _("To update your card, open your billing page:") + "\n" + absolute_url("billing.fix_payment"),
                      _("If your card has not changed, there is nothing to do: your bank may simply have declined "
                        "it once."))
        send_mail(account.email, _("Your DAWNS payment did not go through"), body, kind="payment_failed",
                  account_id=account.id, lang=lang, session=session)


def renewal_reminder(session: Session, account: Account, *, on: datetime | None, amount: int | None,
                     currency: str | None) -> None:
    """A yearly membership renews soon (`invoice.upcoming`)."""
    with in_language(account.language) as lang:
        price = money(amount, currency or "usd") if amount is not None else None
        if on is not None and price:
            when = _("Your yearly DAWNS membership renews on %(date)s for %(amount)s.", date=day(on), amount=price)
        elif on is not None:
            when = _("Your yearly DAWNS membership renews on %(date)s.", date=day(on))
        else:
            when = _("Your yearly DAWNS membership renews soon.")
        body = letter(hello(account), when + " " + _("There is nothing to do to keep reading."),
                      _("To change your level or your card, or to stop the renewal, go to your account:") + "\n"
                      + absolute_url("members.account"),
                      _("Thank you for another year of support."))
        send_mail(account.email, _("Your DAWNS membership renews soon"), body, kind="renewal_reminder",
                  account_id=account.id, lang=lang, session=session)
