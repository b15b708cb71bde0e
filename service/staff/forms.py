from __future__ import annotations

from flask_wtf import FlaskForm
from wtforms import BooleanField, DateField, EmailField, SelectField, StringField, TextAreaField
from wtforms.validators import DataRequired, Email, Length, Optional

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


class TokenForm(ConfirmForm):
    name = StringField("Token name", validators=[DataRequired("Name the token."), Length(max=100)])
