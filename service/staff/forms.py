from __future__ import annotations

from decimal import Decimal

from flask_wtf import FlaskForm
from wtforms import (
    BooleanField,
    DateField,
    DecimalField,
    EmailField,
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

CONFIRM = "Tick to confirm."


class ConfirmForm(FlaskForm):
    confirm = BooleanField("I confirm", validators=[DataRequired(CONFIRM)])


class CompForm(ConfirmForm):
    reason = TextAreaField("Reason", validators=[DataRequired("Give a reason."), Length(max=500)])
    until = DateField("Ends on (optional)", validators=[Optional()])


class AddStaffForm(ConfirmForm):
    email = EmailField("Email", filters=[lambda v: v.strip() if v else v],
                       validators=[DataRequired("Enter an email."), Email("Enter a valid email.", check_deliverability=False)])
    name = StringField("Name", validators=[DataRequired("Enter a name."), Length(max=200)])
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
                       validators=[DataRequired("Name the level."), Length(max=100)])
    amount = DecimalField("Amount (USD)", places=2, validators=[_whole_cents, DataRequired("Give an amount."),
                                                                NumberRange(min=1, max=100_000, message="From $1 to $100,000.")])

    def cents(self) -> int:
        return int(self.amount.data * 100)
    interval = SelectField("Every", choices=["month", "year"])
    price = StringField("Existing Stripe Price id (optional)", filters=[lambda v: v.strip() if v else v],
                        validators=[Optional(), Regexp(r"^(price|plan)_[A-Za-z0-9_]{1,200}$",
                                                       message="A Stripe Price id starts with price_.")])
    public = BooleanField("Offer it on /join", default=True)


class TokenForm(ConfirmForm):
    name = StringField("Token name", filters=[lambda v: v.strip() if v else v],
                       validators=[DataRequired("Name the token."), Regexp(NAME_RE, message=f"Use {NAME_RULE}.")])
    scopes = SelectMultipleField("Scopes", choices=list(SCOPES), default=list(DEFAULT_SCOPES),
                                 option_widget=CheckboxInput(), widget=ListWidget(prefix_label=False),
                                 validators=[_at_least_one])
