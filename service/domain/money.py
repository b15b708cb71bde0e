"""Amounts are integer cents everywhere; these words are how people read them."""
from __future__ import annotations

from .membership import Interval

SYMBOLS = {"usd": "$", "eur": "€", "gbp": "£"}


def format_amount(cents: int, currency: str = "usd") -> str:
    """$5, $5.50, €10, 12 CHF."""
    whole, part = divmod(abs(int(cents)), 100)
    number = f"{whole:,}" if part == 0 else f"{whole:,}.{part:02d}"
    sign = "-" if cents < 0 else ""
    symbol = SYMBOLS.get(currency.lower())
    return f"{sign}{symbol}{number}" if symbol else f"{sign}{number} {currency.upper()}"


def per_interval(cents: int, currency: str, interval: Interval | str) -> str:
    """$10 a month, $50 a year."""
    return f"{format_amount(cents, currency)} a {Interval(interval).value}"

