"""The HTTP transport under the official `stripe` library: urllib3's pool, shared by threads.

The library's default transport is `requests`, which rebuilds a request through several layers
and re-reads every proxy environment variable on each call: about 1 ms of CPU per Stripe read,
the largest cost of an `invoice.*` event in the worker. This plugs the same pool that `requests`
uses underneath straight into the library's `HTTPClient` interface. The library still builds
every request, signs it with the key, retries (with its own backoff and Stripe's
`Stripe-Should-Retry`) and turns answers into objects and errors; this only moves bytes.

Proxies follow the usual environment variables (`HTTPS_PROXY`, `HTTP_PROXY`, `NO_PROXY`), read
once, when the gateway is built. Certificates are checked against the library's CA bundle.
"""
from __future__ import annotations

import textwrap
import urllib.request
from typing import Any, Mapping, NoReturn

import stripe
import urllib3
from stripe import APIConnectionError


def proxy_for(base: str) -> str | None:
    """The proxy the environment names for `base` (None when NO_PROXY excludes its host)."""
    from urllib.parse import urlsplit

    host = urlsplit(base).hostname or ""
    if urllib.request.proxy_bypass_environment(host):
        return None
    proxies = urllib.request.getproxies_environment()
    return proxies.get(urlsplit(base).scheme) or None


def _no_dot_segments(url: str) -> None:
    """An id of "." or ".." (the library quotes ids, but not dots) would reach another Stripe
    path once the URL is normalised: no Stripe object has such an id."""
    from urllib.parse import unquote, urlsplit

    if any(segment in (".", "..") for segment in unquote(urlsplit(url).path).split("/")):
        raise stripe.InvalidRequestError("No such object: not a Stripe id", None, code="resource_missing",
                                         http_status=404)


class Urllib3Client(stripe.HTTPClient):
    name = "urllib3"

    def __init__(self, base: str, timeout: float = 10.0, verify_ssl_certs: bool = True) -> None:
        super().__init__(verify_ssl_certs=verify_ssl_certs)
        self.proxy_url = proxy_for(base)
        pool: dict[str, Any] = {
            "timeout": urllib3.Timeout(connect=min(timeout, 5.0), read=timeout),
            "retries": False,  # the library retries, with its own rules
            "maxsize": 16,  # one kept-alive connection per worker thread
        }
        if verify_ssl_certs:
            pool.update(cert_reqs="CERT_REQUIRED", ca_certs=stripe.ca_bundle_path)
        else:
            pool.update(cert_reqs="CERT_NONE")
        if self.proxy_url:
            from urllib.parse import unquote, urlsplit

            parts = urlsplit(self.proxy_url)
            if parts.username:  # http://user:password@proxy:3128: sent as Proxy-Authorization
                pool["proxy_headers"] = urllib3.make_headers(
                    proxy_basic_auth=f"{unquote(parts.username)}:{unquote(parts.password or '')}")
            self.pool: urllib3.PoolManager = urllib3.ProxyManager(self.proxy_url, **pool)
        else:
            self.pool = urllib3.PoolManager(**pool)

    def request(self, method: str, url: str, headers: Mapping[str, str] | None,
                post_data: Any = None) -> tuple[bytes, int, Mapping[str, str]]:
        _no_dot_segments(url)
        try:
            resp = self.pool.request(method.upper(), url, headers=dict(headers or {}), body=post_data)
        except Exception as exc:  # noqa: BLE001  (every failure becomes the library's connection error)
            self._handle_request_error(exc)
        return resp.data, resp.status, resp.headers

    def request_stream(self, method: str, url: str, headers: Mapping[str, str] | None,
                       post_data: Any = None) -> tuple[Any, int, Mapping[str, str]]:
        _no_dot_segments(url)
        try:
            resp = self.pool.request(method.upper(), url, headers=dict(headers or {}), body=post_data,
                                     preload_content=False)
        except Exception as exc:  # noqa: BLE001
            self._handle_request_error(exc)
        return resp, resp.status, resp.headers

    @staticmethod
    def _handle_request_error(exc: Exception) -> NoReturn:
        # As the library's own clients: a certificate problem is not retried; timeouts and
        # connection failures are (the request may not have reached Stripe; the library adds
        # an idempotency key to every write, so a retry never doubles one).
        if isinstance(exc, urllib3.exceptions.SSLError):
            msg, retry = "Could not verify Stripe's SSL certificate.", False
        elif isinstance(exc, (urllib3.exceptions.TimeoutError, urllib3.exceptions.ProtocolError,
                              urllib3.exceptions.NewConnectionError, urllib3.exceptions.ProxyError,
                              urllib3.exceptions.MaxRetryError, ConnectionError)):
            msg, retry = "Unexpected error communicating with Stripe.", True
        else:
            msg, retry = "Unexpected error communicating with Stripe (a local configuration problem?).", False
        detail = f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__
        raise APIConnectionError(textwrap.fill(msg) + f"\n\n(Network error: {detail})", should_retry=retry) from exc

    def close(self) -> None:
        self.pool.clear()
