"""Readers in English, French and Arabic (SPEC "Readers").

The language of a request comes from, in order: the reader's saved choice (`accounts.language`),
the `lang` switcher (`?lang=fr` on any page: it is saved to a signed-in reader's account and to a
`lang` cookie), then `Accept-Language`; English otherwise. Outside a request (the worker, the
CLI) a message takes the language of the account it is for: `in_language(account.language)`.

Amounts and dates are formatted per locale with Babel. Staff pages stay English; the catalogues
are `service/translations/{fr,ar}/LC_MESSAGES/messages.po`, compiled by `make`.

Outside the layers, like `mail`: every layer may speak to readers.
"""
from __future__ import annotations

from contextlib import contextmanager
from datetime import date, datetime
from typing import Iterator
from urllib.parse import urlencode

from babel import Locale
from babel.dates import format_date
from babel.numbers import format_currency
from flask import Flask, Response, current_app, g, has_request_context, request
from flask_babel import Babel, force_locale, get_locale, gettext, lazy_gettext, ngettext

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
           "day", "describe_level", "english", "stripe_locale", "is_rtl", "known", "init_app"]


def known(lang: str | None) -> str | None:
    """`lang` if it is one of ours ("fr-CA" counts as "fr"), else None."""
    if not lang:
        return None
    base = lang.strip().replace("_", "-").split("-")[0].lower()
    return base if base in LANGUAGES else None


def _switched() -> str | None:
    return known(request.args.get("lang")) if request.method in ("GET", "HEAD") else None


def _cross_site() -> bool:
    """A navigation another site started (a link or a form elsewhere): it may show a page in
    another language, never change what a reader saved."""
    return request.headers.get("Sec-Fetch-Site", "none") not in ("same-origin", "none")


def select_language() -> str:
    if not has_request_context():
        return DEFAULT
    from flask_login import current_user  # late: the user loader needs the app

    if request.blueprint == "staff":
        return DEFAULT  # staff pages stay English (SPEC "Readers")
    switched = _switched()
    user = current_user if current_user and current_user.is_authenticated else None
    saved = known(getattr(user, "language", None))
    if switched and user is not None and not _cross_site():
        if switched != saved:
            g.save_language = switched
        return switched
    if saved:
        return saved
    return switched or known(request.cookies.get(COOKIE)) or (
        request.accept_languages.best_match(LANGUAGES.keys()) or DEFAULT)


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
    return format_currency(amount, currency.upper(), format=pattern, locale=locale, currency_digits=False)


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


def init_app(app: Flask) -> None:
    Babel(app, locale_selector=select_language, default_domain="messages")
    app.jinja_env.policies["ext.i18n.trimmed"] = True  # as babel.cfg extracts them
    app.jinja_env.globals.update(LANGUAGES=LANGUAGES, current_language=current_language, is_rtl=is_rtl,
                                 money=money, per_interval=per_interval, describe_level=describe_level,
                                 language_url=language_url)
    app.jinja_env.filters["day"] = day

    @app.after_request
    def _remember_language(response: Response) -> Response:
        switched = _switched()
        if switched:
            response.set_cookie(COOKIE, switched, max_age=COOKIE_MAX_AGE, samesite="Lax",
                                secure=current_app.config["PUBLIC_BASE_URL"].startswith("https://"))
        return response


def chosen_language() -> str | None:
    """The language a signed-in reader just chose with the switcher, for the pages to save
    (`members`, after the request); None when nothing changed."""
    if _switched():
        get_locale()  # the selector notes a choice to save
    return g.get("save_language")


def language_url(lang: str) -> str:
    """This page in `lang`: the same path and query, with `lang` set."""
    args = request.args.to_dict(flat=False)
    args["lang"] = [lang]
    return f"{request.path}?{urlencode(args, doseq=True)}"
