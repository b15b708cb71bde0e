from __future__ import annotations

from flask_wtf import FlaskForm
from wtforms import BooleanField, EmailField, IntegerField, PasswordField, StringField
from wtforms.validators import DataRequired, Email, Length, NumberRange, Optional, Regexp

from ..accounts.services import MIN_PASSWORD
from ..membership.organisations import MAX_SEATS, MIN_SELF_SERVE_SEATS


def _strip(value: str | None) -> str | None:
    return value.strip() if isinstance(value, str) else value


ONE_LINE = Regexp(r"^[^\x00-\x1f\x7f]*$", message="Use a name on one line, without control characters.")

NEWSLETTER_HINT = ("Seat holders receive DAWNS Digest, our premium daily newsletter, free of charge. "
                   "You can stop it at any time.")


class OrganisationJoinForm(FlaskForm):
    organisation = StringField("Organisation name", filters=[_strip], validators=[
        DataRequired("Please enter your organisation's name."),
        Length(min=2, max=200, message="Use 2 to 200 characters."),
        ONE_LINE])
    seats = IntegerField("Seats", default=5, render_kw={"inputmode": "numeric", "min": MIN_SELF_SERVE_SEATS},
                         validators=[DataRequired(f"Enter how many seats, at least {MIN_SELF_SERVE_SEATS}."),
                                     NumberRange(MIN_SELF_SERVE_SEATS, MAX_SEATS,
                                                 f"Choose between {MIN_SELF_SERVE_SEATS} and {MAX_SEATS:,} seats.")])


class NewContactForm(OrganisationJoinForm):
    """The same, for a visitor without an account: the contact's account is made too."""

    name = StringField("Your full name", filters=[_strip],
                       validators=[DataRequired("Please enter your name."), Length(max=200), ONE_LINE])
    email = EmailField("Your work email", filters=[_strip], validators=[
        DataRequired("Please enter your email address."),
        Email("Please enter a valid email address.", check_deliverability=False), Length(max=320)])
    password = PasswordField("Password", validators=[
        DataRequired("Please choose a password."),
        Length(min=MIN_PASSWORD, max=200, message=f"Use at least {MIN_PASSWORD} characters.")])
    newsletter = BooleanField("Send me DAWNS Digest, free for seat holders", default=True)


class SeatNumberForm(FlaskForm):
    seats = IntegerField("Seats", render_kw={"inputmode": "numeric", "min": 1}, validators=[
        DataRequired("Enter the number of seats."), NumberRange(1, MAX_SEATS, f"Choose between 1 and {MAX_SEATS:,} seats.")])


class InviteForm(FlaskForm):
    email = EmailField("Colleague's email", filters=[_strip], validators=[
        DataRequired("Please enter an email address."),
        Email("Please enter a valid email address.", check_deliverability=False), Length(max=320)])


class AcceptForm(FlaskForm):
    """Accepting an invitation: name and password only when the address has no account yet."""

    name = StringField("Your full name", filters=[_strip], validators=[Optional(), Length(max=200), ONE_LINE])
    password = PasswordField("Choose a password", validators=[
        Optional(), Length(min=MIN_PASSWORD, max=200, message=f"Use at least {MIN_PASSWORD} characters.")])
    newsletter = BooleanField("Send me DAWNS Digest, free for seat holders", default=True)

    def require_password(self) -> bool:
        if not self.password.data:
            self.password.errors = [*self.password.errors, "Please choose a password."]
            return False
        return True

    def require_new_account(self) -> bool:
        ok = True
        if not self.name.data:
            self.name.errors = [*self.name.errors, "Please enter your name."]
            ok = False
        if not self.password.data:
            self.password.errors = [*self.password.errors, "Please choose a password."]
            ok = False
        return ok


class ClaimForm(FlaskForm):
    newsletter = BooleanField("Send me DAWNS Digest, free for seat holders", default=True)
