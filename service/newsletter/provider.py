"""The newsletter provider interface and its two adapters.

`LogProvider` (the embedded default) records what it would do; `MailchimpProvider` speaks the
Mailchimp Marketing API v3 (https://mailchimp.com/developer/marketing/api/list-members/).
`build_provider` picks one from configuration.
"""
from __future__ import annotations

import hashlib
import json
import logging
import threading
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Protocol

import requests

from .. import metrics
from ..domain.newsletter import Desired, split_name

log = logging.getLogger("service.newsletter")


@dataclass(frozen=True)
class Change:
    """The state the provider should hold for one reader."""

    desired: Desired
    email: str                      # the address the list should have
    known_email: str | None         # the address the provider has now (None: never sent)
    name: str
    confirm_if_needed: bool = False  # the member asked again: Mailchimp may require double opt-in
    language: str | None = None     # the reader's language (en, fr, ar): Mailchimp's member `language`


@dataclass(frozen=True)
class Result:
    status: str                     # what the provider now holds: subscribed, unsubscribed, archived, pending...
    email: str
    note: str | None = None
    opted_out: bool = False         # the reader had unsubscribed themselves (compliance state)


class ProviderError(Exception):
    def __init__(self, message: str, *, retryable: bool, retry_after: float | None = None) -> None:
        super().__init__(message)
        self.retryable = retryable
        self.retry_after = retry_after


class NewsletterProvider(Protocol):
    name: str

    def apply(self, change: Change) -> Result: ...


def subscriber_hash(email: str) -> str:
    """Mailchimp identifies a list member by the MD5 of the lowercased address."""
    return hashlib.md5(email.strip().lower().encode()).hexdigest()


def _status_for(desired: Desired) -> str:
    return {
        Desired.SUBSCRIBED: "subscribed",
        Desired.UNSUBSCRIBED: "unsubscribed",
        Desired.ARCHIVED: "archived",
        Desired.KEPT: "subscribed",
    }[desired]


class LogProvider:
    """Records every change it would make, in the log and in a JSON-lines file."""

    name = "log"

    def __init__(self, path: str | None = None) -> None:
        self.path = Path(path) if path else None
        self.records: list[dict[str, Any]] = []
        self._lock = threading.Lock()

    def apply(self, change: Change) -> Result:
        record = {
            "at": datetime.now(timezone.utc).isoformat(),
            "list": "DAWNS Digest",
            "action": change.desired.value,
            "email": change.email,
            "previous_email": change.known_email if change.known_email != change.email else None,
            "name": change.name,
            "member_tag": "active" if change.desired == Desired.SUBSCRIBED else "inactive",
        }
        log.warning("NEWSLETTER (log provider) %s", json.dumps(record))
        with self._lock:
            self.records.append(record)
            if self.path is not None:
                self.path.parent.mkdir(parents=True, exist_ok=True)
                with self.path.open("a") as fh:
                    fh.write(json.dumps(record) + "\n")
        return Result(_status_for(change.desired), change.email)


class MailchimpProvider:
    """DAWNS Digest as a Mailchimp audience (list)."""

    name = "mailchimp"

    def __init__(self, *, api_key: str, server_prefix: str, list_id: str, api_base: str | None = None,
                 timeout: float = 10.0, session: requests.Session | None = None) -> None:
        if not api_key or not list_id or not (server_prefix or api_base):
            raise ValueError("MAILCHIMP_API_KEY, MAILCHIMP_LIST_ID and MAILCHIMP_SERVER_PREFIX are required")
        self.base = (api_base or f"https://{server_prefix}.api.mailchimp.com/3.0").rstrip("/")
        self.list_id = list_id
        self.timeout = timeout
        self.session = session or requests.Session()
        # HTTP Basic with any user name and the API key as password.
        self.session.auth = ("dawns", api_key)

    def _member_url(self, email: str) -> str:
        return f"{self.base}/lists/{self.list_id}/members/{subscriber_hash(email)}"

    def _request(self, method: str, url: str, body: dict[str, Any] | None = None) -> requests.Response:
        try:
            resp = self.session.request(method, url, json=body, timeout=self.timeout)
        except requests.Timeout:
            metrics.mailchimp_error("timeout")
            raise ProviderError(f"Mailchimp timed out on {method}", retryable=True) from None
        except requests.RequestException as exc:
            metrics.mailchimp_error("unreachable")
            raise ProviderError(f"Mailchimp unreachable: {exc.__class__.__name__}", retryable=True) from None
        if resp.status_code == 429:
            metrics.mailchimp_error("rate_limited")
            raise ProviderError("Mailchimp rate limit (429)", retryable=True, retry_after=_retry_after(resp))
        if resp.status_code >= 500:
            metrics.mailchimp_error("server_error")
            raise ProviderError(f"Mailchimp error {resp.status_code}", retryable=True, retry_after=_retry_after(resp))
        return resp

    @staticmethod
    def _problem(resp: requests.Response) -> dict[str, Any]:
        try:
            body = resp.json()
            return body if isinstance(body, dict) else {}
        except ValueError:
            return {}

    def apply(self, change: Change) -> Result:
        email = change.email
        # An address change: move the existing list member first (PATCH at the old hash).
        if change.known_email and change.known_email.lower() != email.lower() and change.desired != Desired.ARCHIVED:
            resp = self._request("PATCH", self._member_url(change.known_email), {"email_address": email})
            if resp.status_code not in (200, 404):
                raise self._failure("PATCH email", resp)
        if change.desired == Desired.ARCHIVED:
            target = change.known_email or email
            resp = self._request("DELETE", self._member_url(target))
            if resp.status_code not in (204, 404):  # 404: not on the list, nothing to archive
                raise self._failure("DELETE", resp)
            return Result("archived", email, None if resp.status_code == 204 else "not on the list")
        if change.desired == Desired.UNSUBSCRIBED and not change.known_email:
            return Result("unsubscribed", email, "never on the list")
        fname, lname = split_name(change.name)
        body: dict[str, Any] = {
            "email_address": email,
            "status_if_new": "subscribed" if change.desired == Desired.SUBSCRIBED else "unsubscribed",
            "merge_fields": {"FNAME": fname, "LNAME": lname},
        }
        if change.language:
            body["language"] = change.language  # https://mailchimp.com/developer/marketing/api/list-members/
        if change.desired in (Desired.SUBSCRIBED, Desired.UNSUBSCRIBED):
            body["status"] = _status_for(change.desired)
        resp = self._request("PUT", self._member_url(email), body)
        note = None
        opted_out = False
        if resp.status_code == 400 and self._problem(resp).get("title") == "Member In Compliance State":
            # The reader unsubscribed themselves in Mailchimp: never force them back.
            if not change.confirm_if_needed:
                return Result("unsubscribed", email, "unsubscribed in Mailchimp (compliance state)", opted_out=True)
            body["status"] = "pending"  # the member asked again: Mailchimp sends its confirmation email
            resp = self._request("PUT", self._member_url(email), body)
            note = "awaiting the reader's confirmation email"
        if resp.status_code != 200:
            raise self._failure("PUT", resp)
        status = self._problem(resp).get("status") or _status_for(change.desired)
        tag = "active" if change.desired == Desired.SUBSCRIBED else "inactive"
        tags = self._request("POST", self._member_url(email) + "/tags", {"tags": [{"name": "member", "status": tag}]})
        if tags.status_code not in (200, 204):
            raise self._failure("POST tags", tags)
        return Result(status, email, note, opted_out)

    def _failure(self, what: str, resp: requests.Response) -> ProviderError:
        problem = self._problem(resp)
        detail = problem.get("detail") or problem.get("title") or resp.reason
        metrics.mailchimp_error("refused")
        return ProviderError(f"Mailchimp {what} answered {resp.status_code}: {detail}", retryable=False)


def _retry_after(resp: requests.Response) -> float | None:
    value = resp.headers.get("Retry-After")
    try:
        return float(value) if value else None
    except ValueError:
        return None


def build_provider(config: dict[str, Any]) -> NewsletterProvider:
    kind = config["NEWSLETTER_PROVIDER"]
    if kind == "log":
        return LogProvider(config.get("NEWSLETTER_LOG_PATH"))
    if kind == "mailchimp":
        return MailchimpProvider(
            api_key=config["MAILCHIMP_API_KEY"],
            server_prefix=config["MAILCHIMP_SERVER_PREFIX"],
            list_id=config["MAILCHIMP_LIST_ID"],
            api_base=config["MAILCHIMP_API_BASE"] or None,
            timeout=config["NEWSLETTER_TIMEOUT"],
        )
    raise ValueError(f"NEWSLETTER_PROVIDER must be 'log' or 'mailchimp', not {kind!r}")
