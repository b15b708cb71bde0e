"""GET /api/v1/entitlements: the paywall's question, answered in front of Flask.

The website asks on every premium page, so this route skips Flask's per-request machinery
(contexts, sessions, hooks) and does only what the answer needs: the bearer token and the
membership read together in one autocommit statement, marshmallow for the query and the
answer, the same JSON errors and security headers as the rest of the API. It never calls
Stripe. It is not rate limited: a traffic spike on the website must never become 429s for
readers (the other API routes are limited per token).
"""
from __future__ import annotations

import json
import logging
import time
from datetime import timedelta
from collections.abc import Callable, Iterable
from typing import Any
from urllib.parse import parse_qsl

from marshmallow import ValidationError
from sqlalchemy.exc import SQLAlchemyError

from .. import metrics
from ..db import utcnow
from ..domain.membership import standing
from ..errors import error_body
from ..membership.directory import organisation_ref
from ..security import HSTS, SECURITY_HEADERS
from . import auth
from .schemas import EntitlementQuerySchema, EntitlementSchema
from .lookup import entitlement_lookup

log = logging.getLogger("service.api")

PATH = "/api/v1/entitlements"
_query = EntitlementQuerySchema()
_answer = EntitlementSchema()
_STATUS_TEXT = {200: "200 OK", 401: "401 UNAUTHORIZED", 403: "403 FORBIDDEN", 404: "404 NOT FOUND", 405: "405 METHOD NOT ALLOWED",
                400: "400 BAD REQUEST", 422: "422 UNPROCESSABLE ENTITY", 500: "500 INTERNAL SERVER ERROR",
                503: "503 SERVICE UNAVAILABLE"}


class EntitlementFastPath:
    def __init__(self, app, wsgi_app: Callable) -> None:
        self.app = app
        self.next = wsgi_app
        self.headers = [("Content-Type", "application/json"), ("Cache-Control", "no-store"),
                        *SECURITY_HEADERS.items()]
        if app.config.get("SESSION_COOKIE_SECURE"):
            self.headers.append(("Strict-Transport-Security", HSTS))
        self.grace = timedelta(days=app.config["PAST_DUE_GRACE_DAYS"])

    def __call__(self, environ: dict[str, Any], start_response: Callable) -> Iterable[bytes]:
        if environ.get("PATH_INFO") != PATH:
            return self.next(environ, start_response)
        started = time.perf_counter()
        status, body, extra = self.answer(environ)
        metrics.entitlement_answered(status, time.perf_counter() - started)
        payload = json.dumps(body, separators=(",", ":")).encode()
        start_response(_STATUS_TEXT[status], [*self.headers, ("Content-Length", str(len(payload))), *extra])
        return [b""] if environ.get("REQUEST_METHOD") == "HEAD" else [payload]

    def answer(self, environ: dict[str, Any]) -> tuple[int, dict[str, Any], list[tuple[str, str]]]:
        if environ.get("REQUEST_METHOD") not in ("GET", "HEAD"):
            return 405, error_body("method_not_allowed", "Use GET."), [("Allow", "GET, HEAD")]
        token = auth.bearer(environ.get("HTTP_AUTHORIZATION"))
        if token is None:
            return _denied(auth.MISSING)
        digest = auth.digest_of(token)
        if digest is None:
            return _denied(auth.INVALID)
        try:
            pairs = parse_qsl(environ.get("QUERY_STRING", ""), keep_blank_values=True, errors="strict")
        except (UnicodeDecodeError, ValueError):
            return 400, error_body("bad_request", "The query string is not valid."), []
        if any("\x00" in v for _, v in pairs):
            return 400, error_body("bad_request", "The query string is not valid."), []
        engines = (self.app.extensions["db_read_engine"], self.app.extensions["db_engine"])
        invalid: ValidationError | None = None
        try:
            args = _plain(pairs) or _query.load(dict(pairs))
        except ValidationError as exc:
            invalid = exc  # a caller whose token is not good still hears 401/403 first
            args = {"email": None, "member_id": 0}
        try:
            verdict, member = entitlement_lookup(engines, digest, email=args["email"], member_id=args["member_id"],
                                                 cache_seconds=self.app.config["API_TOKEN_CACHE_SECONDS"])
        except SQLAlchemyError as exc:
            log.error("entitlement check failed: database unavailable (%s)", exc.__class__.__name__)
            return 503, error_body("unavailable", "The membership database is unavailable; retry."), []
        except Exception:  # noqa: BLE001 - never a stack trace to the website
            log.exception("entitlement check failed")
            return 500, error_body("internal_error", "Something went wrong on our side."), []
        if isinstance(verdict, auth.Denied):
            return _denied(verdict)
        if invalid is not None:
            fields = {k: v if isinstance(v, list) else [str(v)] for k, v in invalid.normalized_messages().items()}
            return 422, error_body("validation_error", "Invalid query parameters.", fields=fields), []
        if member is None:
            return 404, error_body("not_found", "No member with that email or id."), []
        # Entitled at this moment (SPEC "Membership states"): grace and comp ends need no job.
        live, via = standing(member.status, member.paid_through, utcnow(), self.grace, member.comp)
        return 200, _answer.dump({
            "entitled": live, "status": member.status.value, "paid_through": member.paid_through,
            "level": member.level, "via": via.value if via else None,
            "organisation": organisation_ref(via, member.organisation_name, member.organisation_slug)}), []


def _denied(denied: auth.Denied) -> tuple[int, dict[str, Any], list[tuple[str, str]]]:
    return denied.status, denied.body(), list(denied.headers)


def _plain(pairs: list[tuple[str, str]]) -> dict[str, Any] | None:
    """The everyday query (one email, or one member id), accepted without the schema machinery;
    anything else goes through EntitlementQuerySchema, which owns the rules and the errors."""
    if len(pairs) != 1:
        return None
    key, value = pairs[0]
    if key == "member_id" and value.isascii() and value.isdigit() and len(value) <= 10 and 0 < int(value) < 2**31:
        return {"email": None, "member_id": int(value)}
    if key == "email" and 0 < len(value) <= 320 and value.isprintable():
        return {"email": value, "member_id": None}
    return None


def init_app(app) -> None:
    app.wsgi_app = EntitlementFastPath(app, app.wsgi_app)  # type: ignore[method-assign]
