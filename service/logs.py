"""One logging set-up for every process: web (gunicorn, the dev server), the worker and the CLI.

- `LOG_FORMAT=json` (the default): one JSON object a line on stdout with `time` (ISO 8601 UTC),
  `level`, `logger`, `message`, `request_id`, and `stripe_event_id`, `member_id`, `outbox_id`
  where they apply. `LOG_FORMAT=text`: readable lines for development (`make run`).
- The context (`log_context(...)`) is a contextvar: a web request sets `request_id`; the worker
  sets the stored row's request id and ids while it applies or delivers that row, so one request
  can be followed from the web process into the worker.
- The request id: `X-Request-ID` from a trusted proxy (TRUST_PROXY_HOPS > 0) when it is short
  and plain, otherwise a new uuid4; always sent back in the `X-Request-ID` response header.
- Redaction: every line is masked before it is written (secrets, tokens, passwords, signatures,
  bearer tokens, Stripe keys, single-use link paths). Nothing that writes here has to remember.

Beside the layers (every layer may use it); it imports nothing of the service.
"""
from __future__ import annotations

import contextvars
import json
import logging
import re
import sys
import uuid
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from datetime import datetime, timezone
from typing import Any, TextIO

FIELDS = ("request_id", "stripe_event_id", "member_id", "outbox_id")
FORMATS = ("json", "text")

_context: contextvars.ContextVar[dict[str, Any]] = contextvars.ContextVar("dawns_log_context", default={})


@contextmanager
def log_context(**fields: Any) -> Iterator[None]:
    """Add fields (request_id, stripe_event_id, member_id, outbox_id) to every log line written
    inside the block; None leaves a field as it was."""
    token = _context.set({**_context.get(), **{k: v for k, v in fields.items() if v is not None}})
    try:
        yield
    finally:
        _context.reset(token)


def current(field: str) -> Any:
    return _context.get().get(field)


def current_request_id() -> str | None:
    """The request id of the work in progress (a web request, or the stored row the worker is
    handling), for the rows it writes."""
    return _context.get().get("request_id")


# --- redaction ------------------------------------------------------------------------------

MASK = "[redacted]"
_SENSITIVE_KEYS = (r"password|passwd|pwd|secret|token|api[_-]?key|apikey|authorization|stripe[_-]signature"
                   r"|cookie|session[_-]?id|client_secret|private_key")
_REDACTIONS: tuple[tuple[re.Pattern[str], str | Callable[[re.Match[str]], str]], ...] = (
    # PEM blocks (keys).
    (re.compile(r"-----BEGIN [A-Z ]+-----.*?-----END [A-Z ]+-----", re.S), MASK),
    # Authorization: Bearer <token> / Basic <credentials>.
    (re.compile(r"\b(Bearer|Basic)\s+[A-Za-z0-9._~+/=-]+", re.I), r"\1 " + MASK),
    # Stripe-Signature header values (before key=value: they hold commas).
    (re.compile(r"\bt=\d+,v\d=[0-9a-f]+(?:,v\d=[0-9a-f]+)*"), MASK),
    # key=value, key: value, "key": "value" for sensitive keys (a JSON body's fields too).
    (re.compile(r"(?i)([\"']?[\w-]*(?:" + _SENSITIVE_KEYS + r")[\w-]*[\"']?\s*[:=]\s*)"
                r"(\"[^\"]*\"|'[^']*'|[^\s,;&}\]]+)"),
     lambda m: m.group(1) + (m.group(2)[0] + MASK + m.group(2)[0] if m.group(2)[:1] in "\"'" else MASK)),
    # Stripe keys and signing secrets, our API tokens, Stripe's signature header values.
    (re.compile(r"\b(?:sk|rk|pk)_(?:test|live)_[A-Za-z0-9]+"), MASK),
    (re.compile(r"\bwhsec_[A-Za-z0-9]+"), MASK),
    (re.compile(r"\bdawns_[A-Za-z0-9_-]{8,}"), MASK),
    # Single-use links and secret URL parts: the segment after these prefixes.
    (re.compile(r"(/(?:reset|login/link|account/email/confirm|invitations|claim|portal|"
                r"newsletter/mailchimp/webhook|seats/claim)/)[^\s/?#\"'<>]+"), r"\1" + MASK),
    # Query parameters that carry tokens.
    (re.compile(r"(?i)([?&](?:token|key|secret|code|signature|sig)=)[^&\s\"'#]+"), r"\1" + MASK),
    # JSON web tokens (paywall entitlement tokens).
    (re.compile(r"\beyJ[A-Za-z0-9_-]{5,}\.[A-Za-z0-9_-]{5,}\.[A-Za-z0-9_-]*"), MASK),
)
# A Stripe webhook body (an Event object) never goes to the logs, even in an error.
_EVENT_BODY = re.compile(r"\{\s*\"id\"\s*:\s*\"evt_[^\"]*\"\s*,\s*\"object\"\s*:\s*\"event\".*", re.S)


# What each pattern needs in the (lowercased) text to match at all: a pattern whose hints are
# all absent cannot match and is skipped. Most lines hold none, so masking costs a few
# substring tests instead of a dozen regular expressions (the webhook route logs on every call).
_HINTS: tuple[tuple[str, ...], ...] = (
    ("-----begin",),
    ("bearer", "basic"),
    ("t=",),
    ("pass", "pwd", "secret", "token", "api", "authorization", "signature", "cookie", "session", "private"),
    ("sk_", "rk_", "pk_"),
    ("whsec_",),
    ("dawns_",),
    ("/reset/", "/login/link/", "/account/email/confirm/", "/invitations/", "/claim/", "/portal/",
     "/newsletter/mailchimp/webhook/"),
    ("token=", "key=", "secret=", "code=", "signature=", "sig="),
    ("eyj",),
)
assert len(_HINTS) == len(_REDACTIONS)


def redact(text: str) -> str:
    """`text` with secrets masked (see the module docstring)."""
    if not text:
        return text
    low = text.lower()
    if '"evt_' in low:
        text = _EVENT_BODY.sub("[webhook body " + MASK + "]", text)
        low = text.lower()
    for hints, (pattern, replacement) in zip(_HINTS, _REDACTIONS):
        if any(hint in low for hint in hints):
            text = pattern.sub(replacement, text)  # type: ignore[arg-type]
            low = text.lower()
    return text


class ContextFilter(logging.Filter):
    """Puts the context's fields on every record (None when they do not apply)."""

    def filter(self, record: logging.LogRecord) -> bool:
        ctx = _context.get()
        for name in FIELDS:
            if getattr(record, name, None) is None:
                setattr(record, name, ctx.get(name))
        return True


def _message(record: logging.LogRecord, formatter: logging.Formatter) -> str:
    text = record.getMessage()
    if record.exc_info:
        text += "\n" + formatter.formatException(record.exc_info)
    elif record.exc_text:
        text += "\n" + record.exc_text
    if record.stack_info:
        text += "\n" + formatter.formatStack(record.stack_info)
    return redact(text)


class JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        line: dict[str, Any] = {
            "time": datetime.fromtimestamp(record.created, tz=timezone.utc).isoformat(timespec="milliseconds")
                    .replace("+00:00", "Z"),
            "level": record.levelname,
            "logger": record.name,
            "message": _message(record, self),
        }
        for name in FIELDS:
            value = getattr(record, name, None)
            if name == "request_id" or value is not None:
                line[name] = redact(str(value)) if isinstance(value, str) else value
        return json.dumps(line, ensure_ascii=False, default=str)


class TextFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        at = datetime.fromtimestamp(record.created, tz=timezone.utc).strftime("%H:%M:%S")
        ids = " ".join(f"{name.removesuffix('_id')}={getattr(record, name)}" for name in FIELDS
                       if getattr(record, name, None) is not None)
        head = f"{at} {record.levelname:<7} {record.name}"
        return f"{head} [{ids}] {_message(record, self)}" if ids else f"{head} {_message(record, self)}"


class _Handler(logging.StreamHandler):
    """Ours on the root logger (found again by this marker when the set-up runs twice)."""

    dawns = True


def configure(fmt: str | None = "json", level: int | str | None = None, stream: TextIO | None = None) -> logging.Handler:
    """Install (or update) the one handler on the root logger. Safe to call again: the last call
    decides the format; `level` (default INFO) and `stream` (default stdout) when given."""
    fmt = (fmt or "json").strip().lower()
    if fmt not in FORMATS:
        raise ValueError(f"LOG_FORMAT must be 'json' or 'text', not {fmt!r}")
    root = logging.getLogger()
    handler = next((h for h in root.handlers if getattr(h, "dawns", False)), None)
    if handler is None:
        handler = _Handler(stream or sys.__stdout__ or sys.stdout)
        handler.addFilter(ContextFilter())
        root.addHandler(handler)
        if level is None:
            root.setLevel(logging.INFO)
    elif stream is not None:
        handler.setStream(stream)  # type: ignore[attr-defined]
    if level is not None:
        root.setLevel(level)
    handler.setFormatter(JsonFormatter() if fmt == "json" else TextFormatter())
    # Flask's own stderr handler would write each line a second time, unformatted.
    from flask.logging import default_handler

    for name in ("service", "flask.app"):
        logging.getLogger(name).removeHandler(default_handler)
    # Chatty libraries: Alembic's plugin set-up on every CLI command and /readyz, the Stripe
    # library's line per API call (its URLs can hold a reader's email), werkzeug's access lines
    # (the service's own `request` line carries the request id and no token-bearing path).
    for name in ("alembic", "stripe", "werkzeug"):
        if logging.getLogger(name).level == logging.NOTSET:
            logging.getLogger(name).setLevel(logging.WARNING)
    return handler


# --- request ids -----------------------------------------------------------------------------

REQUEST_ID_HEADER = "X-Request-ID"
_VALID_ID = re.compile(r"\A[A-Za-z0-9._-]{1,64}\Z")


def new_request_id() -> str:
    return uuid.uuid4().hex


def request_id_for(environ: dict[str, Any], trusted: bool) -> str:
    """The proxy's X-Request-ID when the request came through a trusted proxy and the id is
    plain and short; otherwise a new one."""
    if trusted:
        given = environ.get("HTTP_X_REQUEST_ID", "").strip()
        if _VALID_ID.match(given):
            return given
    return new_request_id()


class RequestIdMiddleware:
    """Outermost WSGI layer: every request (the entitlement fast path too) runs with a request
    id in the log context and answers it in `X-Request-ID`."""

    def __init__(self, wsgi_app: Callable, trusted_hops: int) -> None:
        self.next = wsgi_app
        self.trusted = trusted_hops > 0

    def __call__(self, environ: dict[str, Any], start_response: Callable) -> Iterable[bytes]:
        request_id = request_id_for(environ, self.trusted)
        environ["dawns.request_id"] = request_id

        def start(status: str, headers: list[tuple[str, str]], exc_info: Any = None):
            headers = [(k, v) for k, v in headers if k.lower() != "x-request-id"]
            headers.append((REQUEST_ID_HEADER, request_id))
            return start_response(status, headers, exc_info) if exc_info else start_response(status, headers)

        context = contextvars.copy_context()
        context.run(_context.set, {**_context.get(), "request_id": request_id})
        body = context.run(self.next, environ, start)
        return _InContext(body, context)


class _InContext:
    """The response body, iterated and closed in the request's log context (work done after
    the response, such as mail tried at once, logs with the request id)."""

    def __init__(self, body: Iterable[bytes], context: contextvars.Context) -> None:
        self.body = body
        self.context = context
        self.iterator = iter(body)

    def __iter__(self) -> "_InContext":
        return self

    def __next__(self) -> bytes:
        return self.context.run(next, self.iterator)

    def close(self) -> None:
        close = getattr(self.body, "close", None)
        if close is not None:
            self.context.run(close)


def init_app(app: Any) -> None:
    """From create_app: the logging set-up (LOG_FORMAT) and the request id middleware. Goes on
    last, so it wraps everything else (ProxyFix, the entitlement fast path)."""
    configure(app.config.get("LOG_FORMAT", "json"))
    from flask import request

    requests_log = logging.getLogger("service.request")

    @app.after_request
    def _log_request(response):
        # One line per request, with its request id: the endpoint's name, never the path (paths
        # can carry single-use tokens). Probes and static files are left out.
        if request.endpoint not in _QUIET_ENDPOINTS:
            requests_log.info("%s %s %s", request.method, request.endpoint or "(no route)", response.status_code)
        return response


_QUIET_ENDPOINTS = frozenset({"static", "ops.healthz", "ops.readyz", "metrics.scrape"})


def wrap_wsgi(app: Any) -> None:
    app.wsgi_app = RequestIdMiddleware(app.wsgi_app, int(app.config.get("TRUST_PROXY_HOPS") or 0))
