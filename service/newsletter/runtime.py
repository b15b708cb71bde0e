"""Wiring: the configured provider, and best-effort delivery right after a change commits."""
from __future__ import annotations

import logging
from functools import partial

from flask import Flask, Response, current_app, g

from .provider import LogProvider, NewsletterProvider, build_provider

log = logging.getLogger("service.newsletter")


def init_app(app: Flask) -> None:
    provider = build_provider(app.config)
    app.extensions["newsletter_provider"] = provider
    if isinstance(provider, LogProvider):
        app.extensions["newsletter_provider_inline"] = provider
    else:
        app.extensions["newsletter_provider_inline"] = build_provider(
            {**app.config, "NEWSLETTER_TIMEOUT": app.config["NEWSLETTER_INLINE_TIMEOUT"]})

    @app.after_request
    def _deliver_after_response(response: Response) -> Response:
        due = g.pop("newsletter_due", None)
        if due and not app.config.get("NEWSLETTER_INLINE_DISABLED"):
            # After the response is sent: Stripe's webhook answer never waits on Mailchimp.
            response.call_on_close(partial(deliver_now, app, frozenset(due)))
        return response


def get_provider(inline: bool = False) -> NewsletterProvider:
    return current_app.extensions["newsletter_provider_inline" if inline else "newsletter_provider"]


def deliver_now(app: Flask, account_ids: frozenset[int]) -> None:
    """Best effort: any failure leaves the row for `flask newsletter sync`."""
    from ..db import close_session, get_session
    from .outbox import sync_once

    with app.app_context():
        try:
            for account_id in sorted(account_ids):
                sync_once(get_session(), get_provider(inline=True), account_id=account_id)
        except Exception:  # noqa: BLE001 - never let a delivery failure escape a finished request
            log.exception("best-effort newsletter delivery failed; the worker will retry")
        finally:
            close_session()
