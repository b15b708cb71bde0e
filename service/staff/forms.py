from __future__ import annotations

from decimal import Decimal

from flask_wtf import FlaskForm
from wtforms import (
    BooleanField,
    DateField,
    DecimalField,
    EmailField,
    IntegerField,
    SelectField,
    SelectMultipleField,
    StringField,
    TextAreaField,
)
from wtforms.validators import (
    DataRequired,
    Email,
    Length,
    NumberRange,
    Optional,
    Regexp,
    StopValidation,
    ValidationError,
)
from wtforms.widgets import CheckboxInput, ListWidget

from ..accounts.api_tokens import DEFAULT_SCOPES, NAME_RE, NAME_RULE, SCOPES
from ..billing.organisations import MAX_TRIAL_DAYS
from ..membership.organisations import MAX_SEATS

CONFIRM = "Tick to confirm."


class ConfirmForm(FlaskForm):
    confirm = BooleanField("I confirm", validators=[DataRequired(CONFIRM)])


class CompForm(ConfirmForm):
    reason = TextAreaField("Reason", validators=[DataRequired("Give a reason."), Length(max=500)])
    until = DateField("Ends on (optional)", validators=[Optional()])


# Names go into mail subjects and bodies: one line, no control characters.
ONE_LINE = Regexp(r"^[^\x00-\x1f\x7f]*$", message="One line, without control characters.")


class AddStaffForm(ConfirmForm):
    email = EmailField("Email", filters=[lambda v: v.strip() if v else v],
                       validators=[DataRequired("Enter an email."), Email("Enter a valid email.", check_deliverability=False)])
    name = StringField("Name", validators=[DataRequired("Enter a name."), Length(max=200), ONE_LINE])
    role = SelectField("Role", choices=["staff", "admin"])


class RoleForm(ConfirmForm):
    role = SelectField("Role", choices=["staff", "admin"])


def _at_least_one(form, field) -> None:
    # Not DataRequired: its `required` flag would make the browser demand every checkbox.
    if not field.data:
        raise ValidationError("Choose at least one scope.")


def _whole_cents(form, field) -> None:
    value = field.data
    if value is None:
        return
    if not value.is_finite() or value != value.quantize(Decimal("0.01")):
        raise StopValidation("Give the amount in dollars and cents, e.g. 7.50.")


class LevelForm(ConfirmForm):
    name = StringField("Name", filters=[lambda v: v.strip() if v else v],
                       validators=[DataRequired("Name the level."), Length(max=100), ONE_LINE])
    amount = DecimalField("Amount (USD)", places=2, validators=[_whole_cents, DataRequired("Give an amount."),
                                                                NumberRange(min=1, max=100_000, message="From $1 to $100,000.")])

    def cents(self) -> int:
        return int(self.amount.data * 100)
    interval = SelectField("Every", choices=["month", "year"])
    price = StringField("Existing Stripe Price id (optional)", filters=[lambda v: v.strip() if v else v],
                        validators=[Optional(), Regexp(r"^(price|plan)_[A-Za-z0-9_]{1,200}$",
                                                       message="A Stripe Price id starts with price_.")])
    public = BooleanField("Offer it on /join", default=True)
    organisation = BooleanField("For organisations: a yearly price per seat, never on /join")


class TokenForm(ConfirmForm):
    name = StringField("Token name", filters=[lambda v: v.strip() if v else v],
                       validators=[DataRequired("Name the token."), Regexp(NAME_RE, message=f"Use {NAME_RULE}.")])
    scopes = SelectMultipleField("Scopes", choices=list(SCOPES), default=list(DEFAULT_SCOPES),
                                 option_widget=CheckboxInput(), widget=ListWidget(prefix_label=False),
                                 validators=[_at_least_one])


def _strip(value):
    return value.strip() if value else value


class OrganisationForm(ConfirmForm):
    """An organisation that pays by invoice (the contact's name only when they have no account)."""

    name = StringField("Organisation name", filters=[_strip],
                       validators=[DataRequired("Name the organisation."), Length(max=200), ONE_LINE])
    contact_email = EmailField("Billing contact's email", filters=[_strip],
                               validators=[DataRequired("Enter the contact's email."),
                                           Email("Enter a valid email.", check_deliverability=False)])
    contact_name = StringField("Contact's name (when they have no account yet)", filters=[_strip],
                               validators=[Optional(), Length(max=200), ONE_LINE])
    seats = IntegerField("Seats", validators=[DataRequired("Give the number of seats."),
                                              NumberRange(min=1, max=MAX_SEATS, message=f"From 1 to {MAX_SEATS:,}.")])
    domains = StringField("Email domains (optional)", filters=[_strip], validators=[Optional(), Length(max=2000)])
    trial_days = IntegerField("Trial days until the first invoice is paid", default=MAX_TRIAL_DAYS,
                              validators=[NumberRange(min=0, max=MAX_TRIAL_DAYS,
                                                      message=f"From 0 to {MAX_TRIAL_DAYS} days.")])
    level = SelectField("Level", coerce=int, validate_choice=True)


class DomainsForm(ConfirmForm):
    domains = StringField("Email domains", validators=[Length(max=2000)])


class SeatsForm(ConfirmForm):
    seats = IntegerField("Seats", validators=[DataRequired("Give the number of seats."),
                                              NumberRange(min=1, max=MAX_SEATS, message=f"From 1 to {MAX_SEATS:,}.")])
