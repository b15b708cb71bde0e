"""A real HTTP server answering as the Mailchimp Marketing API v3 documents, for list members:
https://mailchimp.com/developer/marketing/api/list-members/ and .../list-member-tags/

It keeps members per list, enforces Basic auth with the API key, the subscriber hash of the
lowercased email, the compliance state of readers who unsubscribed themselves, and can be told
to fail (429, 500, slow answers) for the next N requests.
"""
from __future__ import annotations

import base64
import hashlib
import json
import threading
import time
from collections import defaultdict
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any


def md5(email: str) -> str:
    return hashlib.md5(email.lower().encode()).hexdigest()


@dataclass
class Call:
    method: str
    path: str
    body: Any
    auth: str | None
    status: int = 0


@dataclass
class Member:
    email_address: str
    status: str
    merge_fields: dict = field(default_factory=dict)
    tags: dict = field(default_factory=dict)
    self_unsubscribed: bool = False


class MailchimpStandIn:
    def __init__(self, api_key: str = "key-us1", list_id: str = "dawns123") -> None:
        self.api_key = api_key
        self.list_id = list_id
        self.members: dict[str, Member] = {}
        self.archived: dict[str, Member] = {}
        self.calls: list[Call] = []
        self.failures: list[tuple[int, float]] = []  # (status, delay) for the next requests
        self.delay = 0.0
        self.in_flight: dict[str, int] = defaultdict(int)
        self.max_in_flight: dict[str, int] = defaultdict(int)
        self.lock = threading.Lock()
        standin = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"
            disable_nagle_algorithm = True  # headers and body leave at once (no 40 ms delayed-ACK stall)

            def log_message(self, *args):
                pass

            def _send(self, status: int, body: Any = None, headers: dict | None = None) -> None:
                payload = b"" if body is None else json.dumps(body).encode()
                try:
                    self.send_response(status)
                    self.send_header("Content-Type", "application/problem+json" if status >= 400 else "application/json")
                    for k, v in (headers or {}).items():
                        self.send_header(k, v)
                    self.send_header("Content-Length", str(len(payload)))
                    self.end_headers()
                    self.wfile.write(payload)
                except (BrokenPipeError, ConnectionResetError):
                    pass

            def _handle(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                raw = self.rfile.read(length) if length else b""
                body = json.loads(raw) if raw else None
                call = Call(self.command, self.path, body, self.headers.get("Authorization"))
                parts = self.path.strip("/").split("/")
                key = parts[4] if len(parts) > 4 else ""
                with standin.lock:
                    standin.calls.append(call)
                    forced = standin.failures.pop(0) if standin.failures else None
                    standin.in_flight[key] += 1
                    standin.max_in_flight[key] = max(standin.max_in_flight[key], standin.in_flight[key])
                try:
                    if standin.delay:
                        time.sleep(standin.delay)
                    if forced:
                        status, delay = forced
                        if delay:
                            time.sleep(delay)
                        call.status = status
                        headers = {"Retry-After": "0"} if status == 429 else None
                        return self._send(status, {"title": "Forced", "status": status, "detail": "stand-in failure"},
                                          headers)
                    call.status, out = standin.route(self.command, parts, body, call.auth)
                    self._send(call.status, out)
                finally:
                    with standin.lock:
                        standin.in_flight[key] -= 1

            do_GET = do_PUT = do_PATCH = do_DELETE = do_POST = _handle

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.base = f"http://127.0.0.1:{self.server.server_address[1]}/3.0"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()

    def fail_next(self, n: int, status: int = 500, delay: float = 0.0) -> None:
        with self.lock:
            self.failures.extend([(status, delay)] * n)

    def unsubscribe_themselves(self, email: str) -> None:
        m = self.members[md5(email)]
        m.status, m.self_unsubscribed = "unsubscribed", True

    def _problem(self, status: int, title: str, detail: str = "") -> tuple[int, dict]:
        return status, {"type": "https://mailchimp.com/developer/marketing/docs/errors/", "title": title,
                        "status": status, "detail": detail, "instance": "standin"}

    def _out(self, m: Member) -> dict:
        return {"id": md5(m.email_address), "email_address": m.email_address, "status": m.status,
                "merge_fields": m.merge_fields, "list_id": self.list_id,
                "tags": [{"name": k} for k, v in m.tags.items() if v == "active"]}

    def route(self, method: str, parts: list[str], body: Any, auth: str | None) -> tuple[int, Any]:
        expected = "Basic " + base64.b64encode(f"dawns:{self.api_key}".encode()).decode()
        if not auth or not auth.startswith("Basic ") or base64.b64decode(auth[6:]).decode().split(":", 1)[1] != self.api_key:
            return self._problem(401, "API Key Invalid", "Your API key may be invalid.")
        _ = expected
        # /3.0/lists/{list_id}/members/{hash}[/tags]
        if len(parts) < 5 or parts[1] != "lists" or parts[3] != "members":
            return self._problem(404, "Resource Not Found")
        if parts[2] != self.list_id:
            return self._problem(404, "Resource Not Found", "The requested resource could not be found.")
        h = parts[4]
        with self.lock:
            member = self.members.get(h)
            if len(parts) == 6 and parts[5] == "tags" and method == "POST":
                if member is None:
                    return self._problem(404, "Resource Not Found")
                for tag in body["tags"]:
                    member.tags[tag["name"]] = tag["status"]
                return 204, None
            if method == "PUT":
                if md5(body["email_address"]) != h:
                    return self._problem(400, "Invalid Resource", "The email address does not match the hash.")
                if member is None:
                    archived = self.archived.pop(h, None)
                    member = Member(body["email_address"], body.get("status") or body["status_if_new"])
                    if archived is not None:
                        member.tags = archived.tags
                    self.members[h] = member
                else:
                    wanted = body.get("status")
                    if wanted == "subscribed" and member.self_unsubscribed:
                        return self._problem(400, "Member In Compliance State",
                                             f"{member.email_address} is in a compliance state due to unsubscribe, "
                                             "bounce, or compliance review and cannot be subscribed.")
                    if wanted:
                        member.status = wanted
                member.merge_fields.update(body.get("merge_fields") or {})
                return 200, self._out(member)
            if method == "PATCH":
                if member is None:
                    return self._problem(404, "Resource Not Found")
                if "email_address" in body:
                    del self.members[h]
                    member.email_address = body["email_address"]
                    self.members[md5(member.email_address)] = member
                if "status" in body:
                    member.status = body["status"]
                return 200, self._out(member)
            if method == "DELETE":
                if member is None:
                    return self._problem(404, "Resource Not Found")
                self.archived[h] = self.members.pop(h)
                return 204, None
            if method == "GET":
                return (200, self._out(member)) if member else self._problem(404, "Resource Not Found")
        return self._problem(405, "Method Not Allowed")
