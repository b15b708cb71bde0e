"""Absolute links for mail and redirects, built from PUBLIC_BASE_URL.

The worker sends mail outside any request, so links cannot come from the request's host (and
must not: a forged Host header would otherwise choose where reset links point)."""
from __future__ import annotations

from urllib.parse import urlsplit

from flask import current_app


def absolute_url(endpoint: str, **values: object) -> str:
    base = urlsplit(current_app.config["PUBLIC_BASE_URL"])
    adapter = current_app.url_map.bind(base.netloc, script_name=base.path or "/", url_scheme=base.scheme)
    return adapter.build(endpoint, values, force_external=True)
