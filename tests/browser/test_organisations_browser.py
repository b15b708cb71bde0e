"""Issue 11's journey in Chromium: a newcomer buys seats with the demo checkout, invites a
colleague, who accepts in their own browser; axe on every page, at 390 px."""
from __future__ import annotations

import re

from sqlalchemy import select

from service.accounts.services import find_by_email
from service.db import get_session
from service.domain.membership import MembershipStatus
from service.membership.service import is_entitled
from service.models import NewsletterOutbox

from ..support.wait import poll
from .checks import check_page


def test_buy_seats_invite_and_accept_in_chromium_at_390px(served_demo, browser, phone):
    app, server = served_demo
    page = phone
    page.goto(f"{server.url}/")
    page.get_by_role("link", name="DAWNS for your organisation").click()
    check_page(page)
    page.get_by_label("Organisation name").fill("Sahel Relief")
    page.get_by_label("Seats").fill("2")  # below the minimum: a field error, nothing made
    page.get_by_label("Your full name").fill("Org Admin")
    page.get_by_label("Your work email").fill("admin@sahel.example")
    page.get_by_label("Password").fill("demo password 123")
    page.get_by_role("button", name="Continue to payment").click()
    check_page(page)
    assert "Choose between 3 and" in page.locator(".error").first.inner_text()
    page.get_by_label("Seats").fill("5")
    page.get_by_label("Password").fill("demo password 123")
    page.get_by_role("button", name="Continue to payment").click()
    assert "/demo/checkout/" in page.url
    check_page(page)
    assert "(5 seats)" in page.content()
    page.locator("input[name=number]").fill("4242 4242 4242 4242")
    page.locator("input[name=exp]").fill("12/34")
    page.locator("input[name=cvc]").fill("123")
    page.locator("form.card button[type=submit]").click()
    page.wait_for_url(re.compile(r".*/organisations/sahel-relief$"))
    check_page(page)
    assert "0 of 5 used" in page.content()

    page.get_by_label("Colleague's email").fill("colleague@sahel.example")
    page.get_by_role("button", name="Send invitation").click()
    check_page(page)
    assert "Invitation sent to colleague@sahel.example" in page.content()
    def sent():  # delivered just after the response
        return [m for m in app.extensions.get("mail_outbox", []) if m["To"] == "colleague@sahel.example"]

    assert poll(sent)
    mail = sent()[-1]
    link = re.search(r"(http://127\.0\.0\.1:\d+/organisations/invitations/\S+)", mail.get_content()).group(1)

    colleague_context = browser.new_context(viewport={"width": 390, "height": 844})
    colleague = colleague_context.new_page()
    colleague.goto(link)
    check_page(colleague)
    colleague.get_by_label("Your full name").fill("Col League")
    colleague.get_by_label("Choose a password").fill("another password 1")
    colleague.get_by_role("button", name="Accept the seat").click()
    colleague.wait_for_url(re.compile(r".*/account$"))
    check_page(colleague)
    assert "A seat in Sahel Relief" in colleague.content()
    colleague_context.close()

    page.reload()
    check_page(page)
    assert "1 of 5 used" in page.content() and "colleague@sahel.example" in page.content()
    with app.app_context():
        reader = find_by_email("colleague@sahel.example")
        assert reader.membership.status == MembershipStatus.ORGANISATION and is_entitled(reader.membership)
        assert get_session().scalars(select(NewsletterOutbox.action).where(
            NewsletterOutbox.account_id == reader.id)).all() == ["subscribed"]
        get_session().close()
