"""The browser tier: Playwright driving Debian's Chromium (headless), with axe-core on every
page visited. `.ci/run` installs Chromium and sets REQUIRE_BROWSER=1, so there a missing browser
fails; elsewhere (`make test` on a machine without it) the tier is skipped, loudly."""
from __future__ import annotations

import os
from pathlib import Path

import pytest

CHROMIUM = os.environ.get("CHROMIUM_PATH", "/usr/bin/chromium")
SKIPPED: list[str] = []


@pytest.fixture(scope="session")
def browser():
    if not Path(CHROMIUM).exists():
        message = f"Chromium not found at {CHROMIUM}: the browser tier did not run (apt-get install chromium)"
        if os.environ.get("REQUIRE_BROWSER"):
            pytest.fail(message)
        SKIPPED.append(message)
        pytest.skip(message)
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        chromium = p.chromium.launch(executable_path=CHROMIUM, headless=True, args=["--no-sandbox"])
        yield chromium
        chromium.close()


@pytest.fixture
def phone(browser):
    """A 390 px wide page (the spec's narrow screen)."""
    context = browser.new_context(viewport={"width": 390, "height": 844})
    yield context.new_page()
    context.close()


@pytest.fixture
def phone_in(browser):
    """`phone_in("fr")`: a 390 px page whose browser asks for French (Accept-Language)."""
    contexts = []

    def make(lang: str):
        context = browser.new_context(viewport={"width": 390, "height": 844}, locale=lang)
        contexts.append(context)
        return context.new_page()

    yield make
    for context in contexts:
        context.close()


@pytest.fixture
def desktop(browser):
    context = browser.new_context(viewport={"width": 1280, "height": 900})
    yield context.new_page()
    context.close()


def pytest_terminal_summary(terminalreporter):
    if SKIPPED:
        terminalreporter.write_sep("!", "BROWSER TIER SKIPPED", red=True, bold=True)
        terminalreporter.write_line(SKIPPED[0], red=True, bold=True)
