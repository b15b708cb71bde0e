"""Issue 12's reader journey in Chromium: join at a level on the cards, pay with the demo
checkout, see the account and the change-level page, open Manage billing (the demo portal) and cancel at
period end; axe and the 390 px check on every page, in light and dark. And a keyboard-only join:
the tab order and a visible focus."""
from __future__ import annotations

import os
import re

import pytest

from ..support.wait import poll
from .checks import Words, check_language, check_page

SHOTS = os.environ.get("PAGE_SCREENSHOTS")  # a folder: save what each page looks like


def _look(page, name: str) -> None:
    check_page(page)
    if SHOTS:
        os.makedirs(SHOTS, exist_ok=True)
        page.screenshot(path=os.path.join(SHOTS, f"{name}.png"), full_page=True)


def _reload_until(page, words: str) -> bool:
    def shown():
        page.reload()
        return words in page.content()

    return poll(shown, timeout=20)


@pytest.mark.parametrize("lang, scheme", [("en", "light"), ("fr", "dark"), ("ar", "light"), ("ar", "dark")])
def test_join_pay_and_cancel_at_period_end_at_390px(served_demo, browser, lang, scheme):
    """The browser asks for `lang` (Accept-Language); every page answers in it."""
    app, server = served_demo
    w = Words(app, lang)
    context = browser.new_context(viewport={"width": 390, "height": 844}, color_scheme=scheme, locale=lang)
    page = context.new_page()
    tag = f"390-{lang}-{scheme}"

    def look(name):
        _look(page, f"{name}-{tag}")
        check_language(page, lang)

    page.goto(f"{server.url}/")
    page.get_by_role("link", name=w("Join"), exact=True).click()
    look("join")
    for words in (w("What every member gets"), "DAWNS Digest", w("Give more")):
        assert words in page.content()
    yearly = w("%(level)s: %(price)s", level=w("Member, yearly"), price=w.price(5000, "year"))
    monthly = w("%(level)s: %(price)s", level=w("Member"), price=w.price(500, "month"))
    page.get_by_label(w("Full name")).fill("Amina Yusuf")
    page.get_by_label(w("Email"), exact=True).fill(f"amina.{lang}.{scheme}@example.org")
    page.get_by_label(w("Password")).fill("a long password 1")
    page.get_by_label(yearly).check()  # a click on the card's words chooses it too
    assert page.get_by_label(monthly).is_checked() is False
    page.get_by_text(w("Give more"), exact=True).click()  # the card, not the radio: the label works
    assert page.get_by_role("radio", name=w("Give more")).is_checked()
    page.get_by_label(w("Amount in whole dollars")).fill("2")  # below the smallest level: a field error
    page.get_by_label(w("Password")).fill("a long password 1")
    page.get_by_role("button", name=w("Join")).click()
    look("join-error")
    assert w("Give at least %(amount)s, in whole dollars.", amount=w.price(500, "month")) in \
        page.locator(".error").first.inner_text()
    page.get_by_role("radio", name=yearly).check()
    page.get_by_label(w("Password")).fill("a long password 1")
    page.get_by_role("button", name=w("Join")).click()

    assert "/demo/checkout/" in page.url
    look("checkout")
    assert w("%(amount)s per year", amount=w.money(5000)) in page.locator("main").text_content()
    page.locator("input[name=number]").fill("4242 4242 4242 4242")
    page.locator("input[name=exp]").fill("12/34")
    page.locator("input[name=cvc]").fill("123")
    page.locator("form.card button[type=submit]").click()
    page.wait_for_url(re.compile(r".*/join/success.*"))
    look("success")
    member = w("Welcome, you are a member")
    assert member in page.content() or _reload_until(page, member)
    look("success-confirmed")

    page.get_by_role("link", name=w("See your account")).click()
    page.wait_for_url(re.compile(r".*/account$"))
    look("account")
    assert w.price(5000, "year") in page.locator("main").text_content()

    page.get_by_role("link", name=w("Change level")).click()
    look("level")
    # (Changing the price is not submitted: localstripe answers 500 to a subscription's price change.)
    page.get_by_role("link", name=w("Keep my level")).click()
    page.wait_for_url(re.compile(r".*/account$"))

    page.get_by_role("button", name=w("Manage billing")).click()
    page.wait_for_url(re.compile(r".*/demo/portal/.*"))
    look("portal")
    page.get_by_role("button", name=w("Cancel at the end of the period")).click()
    page.wait_for_url(re.compile(r".*/account$"))
    assert _reload_until(page, w("Ends on"))  # the webhook, applied by the worker
    look("account-ending")
    with app.app_context():  # joined in this language: it is the account's, for its mail and DAWNS
        from service.db import get_session
        from service.models import Account

        email = f"amina.{lang}.{scheme}@example.org"
        assert get_session().query(Account).filter_by(email=email).one().language == lang
    context.close()


def test_the_switcher_turns_a_page_arabic_and_back(served_demo, phone):
    """`make run`'s language switcher: on every page, no JavaScript, Arabic right to left."""
    app, server = served_demo
    page = phone
    page.goto(f"{server.url}/join")
    check_language(page, "en")
    page.get_by_role("navigation", name="Language").get_by_role("link", name="العربية").click()
    check_language(page, "ar")
    check_page(page)
    # Mirrored: the benefits' rule stands on the right of the text, the submit button starts on the right.
    rule = page.evaluate("""() => { const s = getComputedStyle(document.querySelector('.benefits'));
                                  return [s.borderRightWidth, s.borderLeftWidth]; }""")
    assert rule == ["4px", "0px"], rule
    nav = page.get_by_role("navigation", name=Words(app, "ar")("Language"))
    nav.get_by_role("link", name="Français").click()
    check_language(page, "fr")
    page.goto(f"{server.url}/login")  # remembered for the next pages
    check_language(page, "fr")
    check_page(page)


def _focus_style(page, handle) -> dict:
    return page.evaluate("""el => { const s = getComputedStyle(el);
        return {outline: `${s.outlineStyle} ${s.outlineWidth} ${s.outlineColor}`, shadow: s.boxShadow}; }""", handle)


def _describe(page, handle) -> str:
    return page.evaluate("""el => el.tagName === 'BUTTON' ? 'button:' + el.textContent.trim()
        : (el.name || el.id || el.tagName.toLowerCase() + ':' + (el.textContent || '').trim())""", handle)


def test_a_keyboard_only_join_reaches_every_field_in_order_with_a_visible_focus(served_demo, phone):
    app, server = served_demo
    page = phone
    page.goto(f"{server.url}/join")
    check_page(page)
    typed = {"name": "Kofi Mensah", "email": "kofi@example.org", "password": "a long password 1"}
    order: list[str] = []
    previous = None
    for _ in range(40):
        page.keyboard.press("Tab")
        if previous is not None:  # the element the focus left looks different now: the focus was visible
            handle, what, style = previous
            assert _focus_style(page, handle) != style, f"no visible focus on {what}: {style}"
        focused = page.evaluate_handle("document.activeElement")
        what = _describe(page, focused)
        order.append(what)
        style = _focus_style(page, focused)
        if what in typed:
            page.keyboard.type(typed[what])
        elif what == "level":  # the cards: the arrows move from the default $5 a month to $50 a year
            page.keyboard.press("ArrowDown")
            assert page.get_by_role("radio", name="Member, yearly: $50 a year").is_checked()
        elif what == "button:Join":
            page.evaluate("el => el.blur()", focused)
            assert _focus_style(page, focused) != style, f"no visible focus on the button: {style}"
            page.evaluate("el => el.focus()", focused)
            break
        previous = (focused, what, style)
    wanted = ["name", "email", "password", "level", "newsletter", "button:Join"]
    assert all(w in order for w in wanted), order
    positions = [order.index(w) for w in wanted]
    assert positions == sorted(positions), order
    assert page.evaluate("document.activeElement.textContent.trim()") == "Join"
    page.keyboard.press("Enter")
    page.wait_for_url(re.compile(r".*/demo/checkout/.*"))
    check_page(page)
    assert "$50 per year" in page.content() and "kofi@example.org" in page.content()
