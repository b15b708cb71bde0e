"""Issue 12's staff journey in Chromium: sign in, search, a member's page, comp the member, the
CSV export; axe on every page, at 390 px and on a desktop, in light and dark. And every other
page staff and readers can reach without paying, once."""
from __future__ import annotations

import os
import re

import pytest

from service.domain.membership import MembershipStatus, Role

from ..support.factories import PASSWORD, make_account
from ..support.wait import poll
from .checks import check_language, check_page

SHOTS = os.environ.get("PAGE_SCREENSHOTS")


def _look(page, name: str) -> None:
    check_page(page)
    if SHOTS:
        os.makedirs(SHOTS, exist_ok=True)
        page.screenshot(path=os.path.join(SHOTS, f"{name}.png"), full_page=True)


def _sign_in(page, base: str, email: str) -> None:
    page.goto(f"{base}/login")
    page.locator("input[name=email]").first.fill(email)
    page.locator("input[name=password]").fill(PASSWORD)
    page.locator("input[name=password]").press("Enter")
    page.wait_for_url(re.compile(r".*/staff$"))


@pytest.mark.parametrize("width,scheme,lang", [(390, "light", "en"), (390, "dark", "fr"), (1280, "light", "ar"),
                                               (1280, "dark", "en")])
def test_staff_search_member_page_comp_and_export(served_demo, browser, width, scheme, lang):
    """Staff pages stay English (SPEC "Readers") whatever language the browser asks for; the
    sign-in page before them is in that language."""
    app, server = served_demo
    make_account(app, email="staff@example.org", name="Staff Person", role=Role.STAFF)
    make_account(app, email="bea.ortiz@example.org", name="Bea Ortiz")
    make_account(app, email="amir.khan@example.org", name="Amir Khan", status=MembershipStatus.LAPSED)
    context = browser.new_context(viewport={"width": width, "height": 900}, color_scheme=scheme, locale=lang)
    page = context.new_page()
    tag = f"{width}-{scheme}-{lang}"
    page.goto(f"{server.url}/login")
    check_language(page, lang)
    _sign_in(page, server.url, "staff@example.org")
    _look(page, f"staff-{tag}")
    check_language(page, "en")

    # The search box has a row of its own, as wide as the form; the selects follow it.
    box = page.get_by_label("Email (exact or start) or name").bounding_box()
    form = page.get_by_role("search").bounding_box()
    select = page.get_by_label("State").bounding_box()
    assert box["width"] > form["width"] * 0.8, (box, form)
    assert select["y"] >= box["y"] + box["height"], (select, box)

    page.get_by_label("Email (exact or start) or name").fill("bea")
    page.get_by_role("button", name="Search").click()
    page.wait_for_url(re.compile(r".*/staff\?.*q=bea.*"))
    _look(page, f"staff-search-{tag}")
    assert "bea.ortiz@example.org" in page.content() and "amir.khan@example.org" not in page.content()

    page.get_by_role("link", name="Bea Ortiz").click()
    page.wait_for_url(re.compile(r".*/staff/members/\d+$"))
    _look(page, f"staff-member-{tag}")
    comp = page.locator("form", has=page.get_by_role("heading", name="Grant a complimentary membership"))
    comp.get_by_label("Reason").fill("Press partner")
    comp.get_by_role("button", name="Grant comp").click()  # without the confirm box: refused, said why
    _look(page, f"staff-member-refused-{tag}")
    comp = page.locator("form", has=page.get_by_role("heading", name="Grant a complimentary membership"))
    comp.get_by_label("Reason").fill("Press partner")
    comp.get_by_label("I confirm").check()
    comp.get_by_role("button", name="Grant comp").click()
    page.wait_for_url(re.compile(r".*/staff/members/\d+$"))
    _look(page, f"staff-member-comped-{tag}")
    assert "Complimentary membership granted." in page.content() and "Press partner" in page.content()

    page.get_by_role("link", name="All members").click()
    page.get_by_role("button", name="Export these as CSV").click()
    page.wait_for_url(re.compile(r".*/staff/exports/\d+$"))
    _look(page, f"staff-export-{tag}")
    assert page.locator("meta[http-equiv]").count() == 0  # no timed refresh (axe: meta-refresh)

    def ready():
        if page.get_by_role("link", name="Refresh progress").count():
            page.get_by_role("link", name="Refresh progress").click()
        return page.get_by_role("link", name="Download the CSV").count() > 0

    assert poll(ready, timeout=20)  # the worker beside the server writes it
    _look(page, f"staff-export-ready-{tag}")
    context.close()


def test_the_other_pages_pass_axe_at_390px_in_light_and_dark(served_demo, browser):
    """The pages the journeys do not pass through: the admin's, and the signed-out reader's."""
    app, server = served_demo
    make_account(app, email="admin@example.org", name="Admin Person", role=Role.ADMIN)
    for scheme, lang in (("light", "en"), ("dark", "ar"), ("light", "fr")):
        context = browser.new_context(viewport={"width": 390, "height": 844}, color_scheme=scheme, locale=lang)
        page = context.new_page()
        for path in ("/", "/login", "/reset", "/join/cancelled", "/organisations/join", "/no-such-page"):
            page.goto(f"{server.url}{path}")
            check_language(page, lang)
            _look(page, f"page{path.replace('/', '-') or '-home'}-390-{scheme}-{lang}")
        _sign_in(page, server.url, "admin@example.org")
        for path in ("/staff/organisations", "/staff/organisations/new", "/staff/checkouts", "/staff/events",
                     "/staff/admin", "/staff/admin/levels"):
            page.goto(f"{server.url}{path}")
            assert page.locator("h1").count() == 1, path
            _look(page, f"page{path.replace('/', '-')}-390-{scheme}-{lang}")
        context.close()
