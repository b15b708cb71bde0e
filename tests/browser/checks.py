"""What every page visited in the browser must meet: axe-core finds no serious or critical
violation (WCAG 2.1 AA rules), and at 390 px nothing scrolls sideways."""
from __future__ import annotations

from axe_playwright_python.sync_playwright import Axe

_axe = Axe()


def check_page(page) -> None:
    results = _axe.run(page, options={"runOnly": {"type": "tag", "values": ["wcag2a", "wcag2aa", "wcag21a",
                                                                           "wcag21aa", "best-practice"]}})
    bad = [v for v in results.response["violations"] if v.get("impact") in ("serious", "critical")]
    assert not bad, f"{page.url}: " + "; ".join(
        f"{v['id']} ({v['impact']}): {v['help']} at {[n['target'] for n in v['nodes']][:3]}" for v in bad)
    width = page.viewport_size["width"] if page.viewport_size else None
    if width is not None and width <= 480:
        scroll, inner = page.evaluate("[document.documentElement.scrollWidth, window.innerWidth]")
        assert scroll <= inner, f"{page.url}: {scroll}px wide at a {inner}px screen (sideways scrolling)"


class Words:
    """The texts a journey looks for, as the app writes them in `lang` (its catalogues)."""

    def __init__(self, app, lang: str) -> None:
        self.app, self.lang = app, lang

    def __call__(self, text: str, **variables) -> str:
        from ..support.i18n import tr

        return tr(self.app, self.lang, text, **variables)

    def price(self, cents: int, interval: str) -> str:
        from service.i18n import in_language, per_interval

        with self.app.test_request_context("/"), in_language(self.lang):
            return per_interval(cents, "usd", interval)

    def money(self, cents: int) -> str:
        from service.i18n import in_language, money

        with self.app.test_request_context("/"), in_language(self.lang):
            return money(cents, "usd")


def check_language(page, lang: str) -> None:
    """The page is in `lang`, right to left for Arabic."""
    html = page.locator("html")
    assert html.get_attribute("lang") == lang, page.url
    assert html.get_attribute("dir") == ("rtl" if lang == "ar" else "ltr"), page.url
