"""Security headers and safe redirects."""
from __future__ import annotations

from urllib.parse import urlsplit

from flask import Flask, Response, abort, request

CSP = (
    "default-src 'self'; img-src 'self' data:; style-src 'self'; script-src 'self'; "
    "object-src 'none'; base-uri 'self'; frame-ancestors 'none'"
)

SECURITY_HEADERS = {
    "Content-Security-Policy": CSP,
    "X-Frame-Options": "DENY",
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "strict-origin-when-cross-origin",
    "Permissions-Policy": "camera=(), microphone=(), geolocation=()",
}
HSTS = "max-age=31536000; includeSubDomains"


def init_app(app: Flask) -> None:
    @app.before_request
    def _refuse_nul_bytes():
        """No text we store or look up may contain NUL (PostgreSQL refuses it): 400, not 500."""
        values = list(request.args.values())
        if request.mimetype in ("application/x-www-form-urlencoded", "multipart/form-data"):
            values += list(request.form.values())
        if any("\x00" in v for v in values) or "\x00" in request.path:
            abort(400)

    @app.after_request
    def _headers(response: Response) -> Response:
        for name, value in SECURITY_HEADERS.items():
            response.headers.setdefault(name, value)
        if app.config.get("SESSION_COOKIE_SECURE"):
            response.headers.setdefault("Strict-Transport-Security", HSTS)
        if request.endpoint and not request.endpoint.startswith("static"):
            response.headers.setdefault("Cache-Control", "no-store")
        return response


def safe_next(target: str | None, default: str) -> str:
    """Only same-site paths are allowed as `next=`: no scheme, no host, no `//` tricks."""
    if not target:
        return default
    target = target.strip()
    if "\\" in target or any(ord(c) < 32 for c in target):
        return default
    parts = urlsplit(target)
    if parts.scheme or parts.netloc or not target.startswith("/") or target.startswith("//"):
        return default
    return target
