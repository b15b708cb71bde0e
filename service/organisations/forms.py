from __future__ import annotations

from flask_babel import format_number
from flask_babel.speaklater import LazyString
from flask_wtf import FlaskForm
from wtforms import BooleanField, EmailField, IntegerField, PasswordField, StringField
from wtforms.validators import DataRequired, Email, Length, NumberRange, Optional, Regexp

from ..accounts.services import MIN_PASSWORD
from ..i18n import gettext as _, lazy_gettext as _l
from ..membership.organisations import MAX_SEATS, MIN_SELF_SERVE_SEATS


def _strip(value: str | None) -> str | None:
    return value.strip() if isinstance(value, str) else value


ONE_LINE = Regexp(r"^[^\x00-\x1f\x7f]*$", message=_l("Use a name on one line, without control characters."))

NEWSLETTER_HINT = _l("Seat holders receive DAWNS Digest, our premium daily newsletter, free of charge. "
                     "You can stop it at any time.")

# 10,000 in English, 10 000 in French: formatted when the message is shown, in the reader's language.
_MAX_SEATS = LazyString(format_number, MAX_SEATS)


class OrganisationJoinForm(FlaskForm):
    organisation = StringField(_l("Organisation name"), filters=[_strip], validators=[
        DataRequired(_l("Please enter your organisation's name.")),
        Length(min=2, max=200, message=_l("Use 2 to 200 characters.")),
        ONE_LINE])
    seats = IntegerField(_l("Seats"), default=5, render_kw={"inputmode": "numeric", "min": MIN_SELF_SERVE_SEATS},
                         validators=[DataRequired(_l("Enter how many seats, at least %(num)d.",
                                                     num=MIN_SELF_SERVE_SEATS)),
                                     NumberRange(MIN_SELF_SERVE_SEATS, MAX_SEATS,
                                                 _l("Choose between %(min)d and %(max)s seats.",
                                                    min=MIN_SELF_SERVE_SEATS, max=_MAX_SEATS))])


class NewContactForm(OrganisationJoinForm):
    """The same, for a visitor without an account: the contact's account is made too."""

    name = StringField(_l("Your full name"), filters=[_strip],
                       validators=[DataRequired(_l("Please enter your name.")), Length(max=200), ONE_LINE])
    email = EmailField(_l("Your work email"), filters=[_strip], validators=[
        DataRequired(_l("Please enter your email address.")),
        Email(_l("Please enter a valid email address."), check_deliverability=False), Length(max=320)])
    password = PasswordField(_l("Password"), validators=[
        DataRequired(_l("Please choose a password.")),
        Length(min=MIN_PASSWORD, max=200, message=_l("Use at least %(num)d characters.", num=MIN_PASSWORD))])
    newsletter = BooleanField(_l("Send me DAWNS Digest, free for seat holders"), default=True)


class SeatNumberForm(FlaskForm):
    seats = IntegerField(_l("Seats"), render_kw={"inputmode": "numeric", "min": 1}, validators=[
        DataRequired(_l("Enter the number of seats.")),
        NumberRange(1, MAX_SEATS, _l("Choose between %(min)d and %(max)s seats.", min=1, max=_MAX_SEATS))])


class InviteForm(FlaskForm):
    email = EmailField(_l("Colleague's email"), filters=[_strip], validators=[
        DataRequired(_l("Please enter an email address.")),
        Email(_l("Please enter a valid email address."), check_deliverability=False), Length(max=320)])


class AcceptForm(FlaskForm):
    """Accepting an invitation: name and password only when the address has no account yet."""

    name = StringField(_l("Your full name"), filters=[_strip], validators=[Optional(), Length(max=200), ONE_LINE])
    password = PasswordField(_l("Choose a password"), validators=[
        Optional(), Length(min=MIN_PASSWORD, max=200, message=_l("Use at least %(num)d characters.", num=MIN_PASSWORD))])
    newsletter = BooleanField(_l("Send me DAWNS Digest, free for seat holders"), default=True)

    def require_password(self) -> bool:
        if not self.password.data:
            self.password.errors = [*self.password.errors, _("Please choose a password.")]
            return False
        return True

    def require_new_account(self) -> bool:
        ok = True
        if not self.name.data:
            self.name.errors = [*self.name.errors, _("Please enter your name.")]
            ok = False
        if not self.password.data:
            self.password.errors = [*self.password.errors, _("Please choose a password.")]
            ok = False
        return ok


class ClaimForm(FlaskForm):
    newsletter = BooleanField(_l("Send me DAWNS Digest, free for seat holders"), default=True)
