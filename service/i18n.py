"""Readers in English, French and Arabic (SPEC "Readers").

The language of a page comes from, in order: the reader's saved choice (`accounts.language`,
changed by the switcher's buttons, a POST with a CSRF token, for a signed-in reader), the
switcher's links for other visitors (`?lang=fr`: that page, and a `lang` cookie for the next
ones), then `Accept-Language`; English otherwise. A `?lang=` link shows any page in that language
without saving anything. Outside a request (the worker, the CLI) a message takes the language of
the account it is for: `in_language(account.language)`.

Amounts and dates are formatted per locale with Babel. Staff pages stay English; the catalogues
are `service/translations/{fr,ar}/LC_MESSAGES/messages.po`, compiled by `make`.

Outside the layers, like `mail`: every layer may speak to readers.
"""
from __future__ import annotations

from contextlib import contextmanager
from datetime import date, datetime
from typing import Iterator
from urllib.parse import quote, urlencode

from babel import Locale
from babel.dates import format_date
from babel.numbers import format_currency
from flask import Flask, Response, current_app, has_request_context, request
from flask_babel import Babel, force_locale, get_locale, gettext, ngettext
from flask_babel.speaklater import LazyString
from markupsafe import Markup, escape

LANGUAGES: dict[str, str] = {"en": "English", "fr": "Français", "ar": "العربية"}
DEFAULT = "en"
RIGHT_TO_LEFT = frozenset({"ar"})
COOKIE = "lang"
COOKIE_MAX_AGE = 365 * 24 * 3600

# Stripe's hosted pages speak no Arabic (Checkout's and the Portal's `locale` enums): "auto"
# lets Stripe follow the reader's browser instead of forcing English.
# https://docs.stripe.com/api/checkout/sessions/create#create_checkout_session-locale
STRIPE_LOCALES = {"en": "en", "fr": "fr", "ar": "auto"}

__all__ = ["LANGUAGES", "gettext", "lazy_gettext", "ngettext", "current_language", "in_language", "money", "per_interval",
           "day", "describe_level", "english", "remember", "here", "stripe_locale", "is_rtl", "known", "init_app"]


class LazyText(LazyString):
    """A text translated when it is shown, in the language of whoever is shown it. Unlike
    Flask-Babel's, it is plain text to Jinja and `flash`: its variables (an organisation's name)
    are escaped, never taken for markup."""

    def __html__(self) -> Markup:
        return escape(str(self))


def lazy_gettext(string: str, **variables) -> LazyText:
    return LazyText(gettext, string, **variables)


def known(lang: str | None) -> str | None:
    """`lang` if it is one of ours ("fr-CA" counts as "fr"), else None."""
    if not lang:
        return None
    base = lang.strip().replace("_", "-").split("-")[0].lower()
    return base if base in LANGUAGES else None


def _switched() -> str | None:
    """`?lang=` on a page (the switcher's links): that page in that language."""
    return known(request.args.get("lang")) if request.method == "GET" else None


def _english_only() -> bool:
    return request.blueprint == "staff" or request.path.startswith("/staff/") or request.path == "/staff"


def select_language() -> str:
    if not has_request_context():
        return DEFAULT
    if _english_only():
        return DEFAULT  # staff pages stay English (SPEC "Readers")
    from flask_login import current_user  # late: the user loader needs the app

    user = current_user if current_user and current_user.is_authenticated else None
    return (_switched() or known(getattr(user, "language", None)) or known(request.cookies.get(COOKIE))
            or request.accept_languages.best_match(LANGUAGES.keys()) or DEFAULT)


def current_language() -> str:
    """The language of what is being written now: the request's, or the one `in_language` forced."""
    locale = get_locale()
    return known(locale.language if locale else None) or DEFAULT


def is_rtl(lang: str | None = None) -> bool:
    return (lang or current_language()) in RIGHT_TO_LEFT


@contextmanager
def in_language(lang: str | None) -> Iterator[str]:
    """Write in `lang` (an account's saved language; None keeps the current one) inside the block."""
    chosen = known(lang) or current_language()
    with force_locale(chosen):
        yield chosen


def english(text) -> str:
    """A (lazy) text in English: for logs and operators."""
    with force_locale(DEFAULT):
        return str(text)


def stripe_locale(lang: str | None = None) -> str:
    return STRIPE_LOCALES[known(lang) or current_language()]


def money(cents: int, currency: str = "usd") -> str:
    """$5, $5.50 in English; 5 $US, 5,50 $US in French; Arabic with its own marks."""
    locale = Locale.parse(current_language())
    amount = cents / 100
    pattern = locale.currency_formats["standard"].pattern
    if cents % 100 == 0:
        pattern = pattern.replace(".00", "")
    text = format_currency(amount, currency.upper(), format=pattern, locale=locale, currency_digits=False)
    if is_rtl(locale.language):
        # "5 US$" kept together left to right inside Arabic text (else it shows as "$US 5").
        return "\u2066" + text.strip("\u200f\u200e") + "\u2069"
    return text


def per_interval(cents: int, currency: str, interval: str) -> str:
    """$10 a month, $50 a year, in the reader's language."""
    amount = money(cents, currency)
    interval = getattr(interval, "value", interval)
    if interval == "year":
        return gettext("%(amount)s a year", amount=amount)
    return gettext("%(amount)s a month", amount=amount)


def describe_level(level) -> str:
    """A level's price: anything with `amount`, `currency` and `interval` (a Level, its terms)."""
    return per_interval(level.amount, level.currency, level.interval)


def day(value: date | datetime | None) -> str:
    """27 November 2026, 27 novembre 2026, 27 نوفمبر 2026."""
    if value is None:
        return ""
    return format_date(value, "d MMMM y", locale=current_language())


def moment(value: datetime | None) -> str:
    """27 November 2026 at 22:44 UTC, in the reader's language."""
    if value is None:
        return ""
    return gettext("%(date)s at %(time)s UTC", date=day(value), time=f"{value:%H:%M}")


def init_app(app: Flask) -> None:
    Babel(app, locale_selector=select_language, default_domain="messages")
    app.jinja_env.policies["ext.i18n.trimmed"] = True  # as babel.cfg extracts them
    # Reader templates format prices with describe_level; staff templates keep the English
    # `per_interval` / `format_amount` globals of create_app.
    app.jinja_env.globals.update(LANGUAGES=LANGUAGES, current_language=current_language, is_rtl=is_rtl,
                                 describe_level=describe_level, language_url=language_url, here=here)
    app.jinja_env.filters["day"] = day
    app.jinja_env.filters["moment"] = moment

    @app.after_request
    def _remember_language(response: Response) -> Response:
        if response.mimetype != "text/html":
            return response
        # Pages differ by language: a shared cache must key them on what chooses it.
        response.vary.add("Accept-Language")
        response.vary.add("Cookie")
        switched = _switched()
        if switched and response.status_code < 400:
            remember(response, switched)
        return response


def remember(response: Response, lang: str) -> None:
    """The browser's choice (a `lang` cookie), for the pages of a visitor who is not signed in."""
    response.set_cookie(COOKIE, lang, max_age=COOKIE_MAX_AGE, samesite="Lax", httponly=True,
                        secure=current_app.config["PUBLIC_BASE_URL"].startswith("https://"))


def here() -> str:
    """This page's own address (path and query, without `lang`), quoted: never a link elsewhere
    (a path such as `/\\evil.example/` is only ever this site's)."""
    path = request.script_root + "/" + quote(request.path.lstrip("/\\"), safe="/")
    args = [(k, v) for k, v in request.args.items(multi=True) if k != "lang"]
    return path + ("?" + urlencode(args) if args else "")


def language_url(lang: str) -> str:
    """This page in `lang` (the switcher's link for a visitor who is not signed in)."""
    page = here()
    return page + ("&" if "?" in page else "?") + urlencode({"lang": lang})
