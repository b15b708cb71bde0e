from __future__ import annotations

from collections.abc import Sequence

from flask_wtf import FlaskForm
from wtforms import BooleanField, EmailField, IntegerField, PasswordField, RadioField, SelectChoice, StringField
from wtforms.validators import DataRequired, Email, EqualTo, Length, Regexp, StopValidation, ValidationError

from ..accounts.services import MIN_PASSWORD
from ..billing.checkout import Choice
from ..domain.membership import Interval
from ..i18n import gettext as _, lazy_gettext as _l, money, per_interval
from ..models import Level

CUSTOM = "custom"


def _strip(value: str | None) -> str | None:
    return value.strip() if isinstance(value, str) else value


def _level_note(level: Level) -> str:
    if level.interval == Interval.YEAR.value:
        return _("One payment a year, about %(monthly)s a month.", monthly=money(round(level.amount / 12), level.currency))
    return _("Paid monthly; stop whenever you like.")


def _give_more_note(minimums: dict[Interval, int | None]) -> str:
    floors = [per_interval(cents, "usd", interval) for interval, cents in sorted(minimums.items(), key=lambda i: i[0].value)
              if cents is not None]
    if len(floors) == 2:
        return _("The same membership, at an amount you choose (at least %(first)s or %(second)s). Readers who give "
                 "more keep DAWNS independent.", first=floors[0], second=floors[1])
    if floors:
        return _("The same membership, at an amount you choose (at least %(first)s). Readers who give more keep "
                 "DAWNS independent.", first=floors[0])
    return _("The same membership, at an amount you choose. Readers who give more keep DAWNS independent.")


class LevelChoiceForm(FlaskForm):
    """The levels of the catalogue as radio buttons, and "give more": a whole-dollar amount of
    at least the smallest public level of its interval. Works without JavaScript."""

    level = RadioField(_l("Your level"), validate_choice=False)
    custom_amount = IntegerField(_l("Amount in whole dollars"), render_kw={"inputmode": "numeric", "min": 1})
    custom_interval = RadioField(_l("Every"), choices=[SelectChoice("month", _l("month")), SelectChoice("year", _l("year"))],
                                 default="month", validate_choice=False)

    def __init__(self, *args, levels: Sequence[Level] = (), minimums: dict[Interval, int | None] | None = None,
                 **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self.offered = list(levels)
        self.minimums = minimums or {}
        # The catalogue's own names (Member, Member, yearly) read in the reader's language too.
        self.level.choices = [SelectChoice(str(lv.id), _("%(level)s: %(price)s", level=_(lv.name),
                                                         price=per_interval(lv.amount, lv.currency, lv.interval)))
                              for lv in self.offered] + [SelectChoice(CUSTOM, _("Give more"))]
        # What the card of each choice says under its name and price (the join page's cards).
        self.notes = {str(lv.id): _level_note(lv) for lv in self.offered}
        self.notes[CUSTOM] = _give_more_note(self.minimums)
        if not self.level.data:
            default = next((lv for lv in self.offered if lv.default), self.offered[0] if self.offered else None)
            self.level.data = str(default.id) if default else CUSTOM

    def validate_level(self, field) -> None:
        if field.data not in {choice.value for choice in field.choices}:
            raise ValidationError(_("Choose one of the levels shown."))

    def validate_custom_interval(self, field) -> None:
        if self.level.data == CUSTOM and field.data not in ("month", "year"):
            raise ValidationError(_("Choose monthly or yearly."))

    def validate_custom_amount(self, field) -> None:
        if self.level.data != CUSTOM:
            field.errors[:] = []  # a level was chosen: whatever is in the amount box does not matter
            raise StopValidation()
        if field.data is None:
            raise ValidationError(_("Enter an amount in whole dollars, or choose a level."))
        interval = Interval(self.custom_interval.data if self.custom_interval.data in ("month", "year") else "month")
        smallest = self.minimums.get(interval)
        if smallest is None:
            raise ValidationError(_("Giving more per year is not offered; choose a level.") if interval == Interval.YEAR
                                  else _("Giving more per month is not offered; choose a level."))
        if field.data * 100 < smallest:
            raise ValidationError(_("Give at least %(amount)s, in whole dollars.",
                                    amount=per_interval(smallest, "usd", interval)))
        if field.data > 100_000:
            raise ValidationError(_("For gifts above %(amount)s, please contact us.", amount=money(10_000_000, "usd")))

    def choice(self) -> Choice:
        if self.level.data == CUSTOM:
            return Choice(amount=int(self.custom_amount.data) * 100, interval=Interval(self.custom_interval.data))
        return Choice(level_id=int(self.level.data))


class JoinForm(LevelChoiceForm):
    name = StringField(_l("Full name"), filters=[_strip], validators=[DataRequired(_l("Please enter your name.")), Length(max=200),
                                                           Regexp(r"^[^\x00-\x1f\x7f]*$", message=_l("Use a name on one line, without control characters."))])
    email = EmailField(
        _l("Email"),
        filters=[_strip],
        validators=[
            DataRequired(_l("Please enter your email address.")),
            Email(_l("Please enter a valid email address."), check_deliverability=False),
            Length(max=320),
        ],
    )
    password = PasswordField(
        _l("Password"),
        validators=[
            DataRequired(_l("Please choose a password.")),
            Length(min=MIN_PASSWORD, max=200, message=_l("Use at least %(num)d characters.", num=MIN_PASSWORD)),
        ],
    )
    newsletter = BooleanField(_l("Send me DAWNS Digest, free for members"), default=True)


class LoginForm(FlaskForm):
    email = EmailField(_l("Email"), filters=[_strip], validators=[DataRequired(_l("Please enter your email address.")), Length(max=320)])
    password = PasswordField(_l("Password"), validators=[DataRequired(_l("Please enter your password.")), Length(max=200)])


class ResetRequestForm(FlaskForm):
    email = EmailField(
        _l("Email"),
        filters=[_strip],
        validators=[
            DataRequired(_l("Please enter your email address.")),
            Email(_l("Please enter a valid email address."), check_deliverability=False),
            Length(max=320),
        ],
    )


class SignInLinkForm(FlaskForm):
    """"Email me a sign-in link", the second form on /login (its own id: one page, two emails)."""

    email = EmailField(
        _l("Email for a sign-in link"),  # not just "Email": the page has two address fields
        id="link-email",
        filters=[_strip],
        validators=[
            DataRequired(_l("Please enter your email address.")),
            Email(_l("Please enter a valid email address."), check_deliverability=False),
            Length(max=320),
        ],
    )


class ResetPasswordForm(FlaskForm):
    password = PasswordField(
        _l("New password"),
        validators=[
            DataRequired(_l("Please choose a password.")),
            Length(min=MIN_PASSWORD, max=200, message=_l("Use at least %(num)d characters.", num=MIN_PASSWORD)),
        ],
    )
    confirm = PasswordField(
        _l("Repeat the new password"),
        validators=[DataRequired(_l("Please repeat the password.")), EqualTo("password", _l("The passwords do not match."))],
    )


class ConfirmWithPasswordForm(FlaskForm):
    """A change a stolen cookie alone must not make: the current password too."""

    password = PasswordField(_l("Your current password"), validators=[DataRequired(_l("Please enter your password.")),
                                                                  Length(max=200)])
