from __future__ import annotations

from flask_wtf import FlaskForm
from wtforms import BooleanField, DateField, EmailField, SelectField, SelectMultipleField, StringField, TextAreaField
from wtforms.validators import DataRequired, Email, Length, Optional, Regexp, ValidationError
from wtforms.widgets import CheckboxInput, ListWidget

from ..api.auth import DEFAULT_SCOPES, SCOPES
from ..api.tokens import NAME_RE, NAME_RULE

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


class TokenForm(ConfirmForm):
    name = StringField("Token name", filters=[lambda v: v.strip() if v else v],
                       validators=[DataRequired("Name the token."), Regexp(NAME_RE, message=f"Use {NAME_RULE}.")])
    scopes = SelectMultipleField("Scopes", choices=list(SCOPES), default=list(DEFAULT_SCOPES),
                                 option_widget=CheckboxInput(), widget=ListWidget(prefix_label=False),
                                 validators=[_at_least_one])
