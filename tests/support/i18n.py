"""The reader's languages in tests: what the catalogues say, and a page's text."""
from __future__ import annotations

import html as html_module
import re

LANGS = ("en", "fr", "ar")


def tr(app, lang: str, text: str, **variables) -> str:
    """`text` as the app writes it in `lang` (the compiled catalogue's translation)."""
    from flask_babel import force_locale, gettext

    with app.test_request_context("/"), force_locale(lang):
        return gettext(text, **variables)


def page_text(resp) -> str:
    """The page's HTML with entities decoded (an apostrophe is &#39; in the markup)."""
    return html_module.unescape(resp.get_data(as_text=True))


def html_lang(resp) -> tuple[str, str]:
    m = re.search(r'<html lang="([^"]+)" dir="([^"]+)">', resp.get_data(as_text=True))
    assert m, "no <html lang dir>"
    return m.group(1), m.group(2)
