"""Wiring: the configured provider. Deliveries happen in the worker, never in a web process."""
from __future__ import annotations

from flask import Flask, current_app

from .provider import NewsletterProvider, build_provider


def init_app(app: Flask) -> None:
    app.extensions["newsletter_provider"] = build_provider(app.config)


def get_provider() -> NewsletterProvider:
    return current_app.extensions["newsletter_provider"]
