"""A real HTTP server standing in for api.stripe.com in tests.

It records every request (method, path, headers, decoded form body) and answers with what the
test programmed, shaped like Stripe's API reference. The Stripe client reaches it through
STRIPE_API_BASE, so the whole client stack (encoding, auth, retries, timeouts) is exercised.
"""
from __future__ import annotations

import json
import threading
import time
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, Callable
from urllib.parse import parse_qsl, urlsplit


@dataclass
class Recorded:
    method: str
    path: str
    query: dict[str, str]
    headers: dict[str, str]
    form: dict[str, str]


@dataclass
class Reply:
    status: int = 200
    body: Any = field(default_factory=dict)
    delay: float = 0.0
    # Stripe's clock for this answer (the Date header), as a Unix time; default: now.
    date: int | None = None


Responder = Callable[[Recorded], Reply]


class StripeStandIn:
    def __init__(self) -> None:
        self.requests: list[Recorded] = []
        self.routes: dict[tuple[str, str], Responder] = {}
        self._lock = threading.Lock()
        standin = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"
            disable_nagle_algorithm = True  # headers and body leave at once (no 40 ms delayed-ACK stall)

            def log_message(self, *args: Any) -> None:  # keep test output clean
                pass

            def _handle(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                raw = self.rfile.read(length).decode() if length else ""
                parts = urlsplit(self.path)
                rec = Recorded(
                    method=self.command,
                    path=parts.path,
                    query=dict(parse_qsl(parts.query, keep_blank_values=True)),
                    headers={k.lower(): v for k, v in self.headers.items()},
                    form=dict(parse_qsl(raw, keep_blank_values=True)),
                )
                with standin._lock:
                    standin.requests.append(rec)
                reply = standin._reply_for(rec)
                if reply.delay:
                    time.sleep(reply.delay)
                payload = json.dumps(reply.body).encode()
                try:
                    self.log_request(reply.status)
                    self.send_response_only(reply.status)
                    self.send_header("Date", self.date_time_string(reply.date))
                    self.send_header("Content-Type", "application/json")
                    self.send_header("Content-Length", str(len(payload)))
                    self.send_header("Request-Id", "req_standin")
                    self.end_headers()
                    self.wfile.write(payload)
                except (BrokenPipeError, ConnectionResetError):
                    pass

            do_GET = do_POST = do_DELETE = _handle

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        self._thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    def start(self) -> "StripeStandIn":
        self._thread.start()
        return self

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()

    def reset(self) -> None:
        with self._lock:
            self.requests.clear()
            self.routes.clear()

    def serve_membership_price(self, price_id: str = "price_test_monthly", amount: int = 500,
                               interval: str = "month", product: str = "prod_test_membership") -> None:
        """STRIPE_PRICE_ID of the test configuration, as https://docs.stripe.com/api/prices/object shapes it."""
        self.on("GET", f"/v1/prices/{price_id}", Reply(200, price(price_id, amount, interval, product)))

    def on(self, method: str, path: str, responder: Responder | Reply | dict) -> None:
        if isinstance(responder, dict):
            responder = Reply(body=responder)
        if isinstance(responder, Reply):
            fixed = responder
            responder = lambda _rec: fixed  # noqa: E731
        self.routes[(method, path)] = responder

    def _reply_for(self, rec: Recorded) -> Reply:
        responder = self.routes.get((rec.method, rec.path))
        if responder is None:
            return Reply(404, {"error": {"type": "invalid_request_error", "message": f"No such route {rec.path}"}})
        return responder(rec)

    def calls(self, method: str, path: str) -> list[Recorded]:
        with self._lock:
            return [r for r in self.requests if r.method == method and r.path == path]


def stripe_error(status: int, type_: str, message: str, code: str | None = None) -> Reply:
    err: dict[str, Any] = {"type": type_, "message": message}
    if code:
        err["code"] = code
    return Reply(status, {"error": err})


class SubscriptionTruth:
    """What Stripe currently says about subscriptions, served on GET /v1/subscriptions/{id}."""

    def __init__(self, standin: StripeStandIn) -> None:
        self.standin = standin
        self.current: dict[str, tuple[dict, int | None]] = {}

    def set(self, sub: dict, as_of: int | None = None) -> None:
        self.current[sub["id"]] = (sub, as_of)
        self.standin.on("GET", f"/v1/subscriptions/{sub['id']}", self._reply)

    def _reply(self, rec: Recorded) -> Reply:
        sub_id = rec.path.rsplit("/", 1)[1]
        sub, as_of = self.current[sub_id]
        return Reply(200, sub, date=as_of)


def price(price_id: str, amount: int, interval: str, product: str = "prod_test_membership") -> dict[str, Any]:
    return {"id": price_id, "object": "price", "active": True, "currency": "usd", "product": product,
            "unit_amount": amount, "type": "recurring", "livemode": False,
            "recurring": {"interval": interval, "interval_count": 1, "usage_type": "licensed"}}
