"""With an https PUBLIC_BASE_URL the service refuses what only development may use."""
from __future__ import annotations

import logging

import pytest

from service import UnsafeSettings

from .support.factories import PASSWORD, make_account
from .support.web import login

PRODUCTION = {"PUBLIC_BASE_URL": "https://members.example.org", "SESSION_COOKIE_SECURE": True,
              "MAIL_BACKEND": "smtp", "NEWSLETTER_PROVIDER": "mailchimp", "MAILCHIMP_API_KEY": "k-us1",
              "MAILCHIMP_SERVER_PREFIX": "us1", "MAILCHIMP_LIST_ID": "l1"}


@pytest.mark.parametrize("setting, value, named", [
    ("MAIL_BACKEND", "log", "MAIL_BACKEND=log"),
    ("DEMO_CHECKOUT", True, "DEMO_CHECKOUT"),
])
def test_production_refuses_to_start_with_an_unsafe_setting(make_app, setting, value, named):
    with pytest.raises(UnsafeSettings) as refused:
        make_app(**{**PRODUCTION, setting: value})
    assert named in str(refused.value) and "PUBLIC_BASE_URL is https" in str(refused.value)


def test_the_same_settings_are_fine_in_development(make_app):
    app = make_app(MAIL_BACKEND="log", PUBLIC_BASE_URL="http://127.0.0.1:5000")
    assert app.config["MAIL_BACKEND"] == "log"


def test_production_starts_safely_configured(make_app):
    app = make_app(**PRODUCTION)
    assert not app.config.get("NEWSLETTER_GOING_NOWHERE")


def test_log_newsletter_provider_in_production_warns_and_shows_a_staff_banner(make_app, caplog):
    caplog.set_level(logging.WARNING, logger="service")
    app = make_app(**{**PRODUCTION, "NEWSLETTER_PROVIDER": "log"})
    assert "NEWSLETTER_PROVIDER=log in production" in caplog.text
    from service.domain.membership import Role

    make_account(app, email="staff@example.org", role=Role.STAFF)
    make_account(app, email="reader@example.org")
    staff, reader = app.test_client(), app.test_client()
    login(staff, "staff@example.org", PASSWORD)
    login(reader, "reader@example.org", PASSWORD)
    banner = "DAWNS changes are going nowhere"
    assert banner in staff.get("/staff").get_data(as_text=True)
    assert banner not in reader.get("/account").get_data(as_text=True)
