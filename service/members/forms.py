from __future__ import annotations

from flask_wtf import FlaskForm
from wtforms import BooleanField, EmailField, PasswordField, StringField, SubmitField
from wtforms.validators import DataRequired, Email, EqualTo, Length

MIN_PASSWORD = 10


def _strip(value: str | None) -> str | None:
    return value.strip() if isinstance(value, str) else value


class JoinForm(FlaskForm):
    name = StringField("Full name", filters=[_strip], validators=[DataRequired("Please enter your name."), Length(max=200)])
    email = EmailField(
        "Email",
        filters=[_strip],
        validators=[
            DataRequired("Please enter your email address."),
            Email("Please enter a valid email address.", check_deliverability=False),
            Length(max=320),
        ],
    )
    password = PasswordField(
        "Password",
        validators=[
            DataRequired("Please choose a password."),
            Length(min=MIN_PASSWORD, max=200, message=f"Use at least {MIN_PASSWORD} characters."),
        ],
    )
    newsletter = BooleanField("Send me DAWNS Digest, free for members", default=True)
    submit = SubmitField("Join for $5/month")


class LoginForm(FlaskForm):
    email = EmailField("Email", filters=[_strip], validators=[DataRequired("Please enter your email address."), Length(max=320)])
    password = PasswordField("Password", validators=[DataRequired("Please enter your password."), Length(max=200)])
    submit = SubmitField("Log in")


class ResetRequestForm(FlaskForm):
    email = EmailField(
        "Email",
        filters=[_strip],
        validators=[
            DataRequired("Please enter your email address."),
            Email("Please enter a valid email address.", check_deliverability=False),
            Length(max=320),
        ],
    )
    submit = SubmitField("Send reset link")


class ResetPasswordForm(FlaskForm):
    password = PasswordField(
        "New password",
        validators=[
            DataRequired("Please choose a password."),
            Length(min=MIN_PASSWORD, max=200, message=f"Use at least {MIN_PASSWORD} characters."),
        ],
    )
    confirm = PasswordField(
        "Repeat the new password",
        validators=[DataRequired("Please repeat the password."), EqualTo("password", "The passwords do not match.")],
    )
    submit = SubmitField("Set new password")


class ActionForm(FlaskForm):
    """A form with only the CSRF token, for POST buttons."""
