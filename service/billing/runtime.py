"""Access to the configured gateway from request and CLI code."""
from __future__ import annotations

from flask import current_app

from .gateway import BillingGateway


def get_gateway() -> BillingGateway:
    return current_app.extensions["billing_gateway"]
