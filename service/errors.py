"""Error pages for people, JSON errors for programs. Never a stack trace."""
from __future__ import annotations

import logging
from typing import Any

from flask import Flask, jsonify, render_template, request
from flask_wtf.csrf import CSRFError
from werkzeug.exceptions import HTTPException

from .domain.membership import N_
from .i18n import gettext as _

log = logging.getLogger("service.errors")

CODES = {
    400: "bad_request",
    401: "unauthorized",
    403: "forbidden",
    404: "not_found",
    405: "method_not_allowed",
    413: "payload_too_large",
    422: "unprocessable_entity",
    429: "rate_limited",
    500: "internal_error",
    503: "unavailable",
}


def wants_json() -> bool:
    return request.path.startswith(("/api/", "/stripe/", "/newsletter/")) or (
        request.accept_mimetypes.best == "application/json"
    )


def error_body(code: str, message: str, **more: Any) -> dict[str, Any]:
    """The one JSON error shape of the service: {"error": {"code", "message", ...}}."""
    return {"error": {"code": code, "message": message, **more}}


def json_error(status: int, message: str, code: str | None = None, headers: Any = None, **more: Any):
    resp = jsonify(error_body(code or CODES.get(status, "error"), message, **more))
    resp.status_code = status
    for name, value in headers or ():
        resp.headers[name] = value
    return resp, status


def _protocol_headers(exc: HTTPException) -> list[tuple[str, str]]:
    """Headers an HTTP error must keep, e.g. `Allow` on a 405 (RFC 9110 section 15.5.6)."""
    return [(k, v) for k, v in exc.get_headers() if k.lower() != "content-type"]


def init_app(app: Flask) -> None:
    @app.errorhandler(CSRFError)
    def _csrf(exc: CSRFError):
        if wants_json():
            return json_error(400, "CSRF token missing or invalid.", "csrf_failed")
        return render_template("errors/error.html", status=400, title=_("This form has expired"),
                               message=_("Please go back, reload the page and try again.")), 400

    @app.errorhandler(HTTPException)
    def _http(exc: HTTPException):
        status = exc.code or 500
        headers = _protocol_headers(exc)
        if wants_json():
            return json_error(status, exc.description or "", headers=headers)
        title, message = _page_words(status)
        return render_template("errors/error.html", status=status, title=title or exc.name,
                               message=message or exc.description), status, headers

    @app.errorhandler(Exception)
    def _unexpected(exc: Exception):
        if isinstance(exc, HTTPException):
            return _http(exc)
        # The endpoint, not the path: paths can carry single-use tokens (reset, confirmation links).
        log.exception("unhandled error on %s %s", request.method, request.endpoint or "unknown route")
        if wants_json():
            return json_error(500, "Something went wrong on our side.")
        return render_template("errors/error.html", status=500, title=_("Something went wrong"),
                               message=_("Something went wrong on our side. Please try again.")), 500


_PAGE_WORDS = {
    400: (N_("Bad request"), N_("This request could not be understood. Please go back and try again.")),
    403: (N_("Not allowed"), N_("Your account cannot open this page.")),
    404: (N_("Page not found"), N_("There is no page at this address. Check the link, or start again from the home page.")),
    405: (N_("Not allowed"), N_("This page cannot be opened this way.")),
    413: (N_("Too large"), N_("What you sent is too large.")),
    429: (N_("Too many attempts"), N_("You have tried this too many times. Please wait a little and try again.")),
    503: (N_("Unavailable"), N_("This service is busy or under maintenance. Please try again in a few minutes.")),
}


def _page_words(status: int) -> tuple[str | None, str | None]:
    """An error page's title and message in the reader's language (JSON errors stay English)."""
    words = _PAGE_WORDS.get(status)
    return (_(words[0]), _(words[1])) if words else (None, None)
