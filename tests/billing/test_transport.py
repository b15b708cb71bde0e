"""The HTTP transport under the stripe library (service/billing/transport.py): proxies from the
environment, Stripe's clock from its `Date` header, retries of failed connections, and errors
that say what happened. Driven over real sockets against the local Stripe stand-in."""
from __future__ import annotations

import socket
from datetime import datetime, timezone

import pytest

from service.billing.gateway import BillingError, StripeGateway

from ..support.stripe_objects import subscription
from ..support.stripe_standin import Reply, stripe_error

NOWHERE = "http://api.stripe.invalid"  # never resolves: only a proxy can reach it


def _gateway(base: str, retries: int = 0) -> StripeGateway:
    return StripeGateway(api_key="sk_test_transport", api_version="2025-03-31.basil", api_base=base, timeout=5,
                         max_network_retries=retries)


def test_a_read_returns_the_object_and_stripes_clock(stripe_api):
    sub = subscription(id="sub_T", customer="cus_T", status="active")
    stamp = datetime(2026, 11, 2, 10, 30, tzinfo=timezone.utc)
    stripe_api.on("GET", "/v1/subscriptions/sub_T", Reply(200, sub, date=int(stamp.timestamp())))
    fetched = _gateway(stripe_api.url).retrieve_subscription("sub_T")
    assert fetched.obj["id"] == "sub_T" and fetched.obj["status"] == "active"
    assert fetched.as_of == stamp
    (call,) = stripe_api.calls("GET", "/v1/subscriptions/sub_T")
    assert call.headers["authorization"] == "Bearer sk_test_transport"
    assert call.headers["stripe-version"] == "2025-03-31.basil"


def test_the_environments_proxy_is_used_and_no_proxy_is_honoured(stripe_api, monkeypatch):
    # The stand-in answers absolute-form requests too, so it serves as the forward proxy here.
    stripe_api.on("GET", "/v1/subscriptions/sub_P", Reply(200, subscription(id="sub_P", customer="cus_P")))
    monkeypatch.setenv("HTTP_PROXY", stripe_api.url)
    monkeypatch.delenv("NO_PROXY", raising=False)
    monkeypatch.delenv("no_proxy", raising=False)
    assert _gateway(NOWHERE).retrieve_subscription("sub_P").obj["id"] == "sub_P"
    assert len(stripe_api.calls("GET", "/v1/subscriptions/sub_P")) == 1

    monkeypatch.setenv("NO_PROXY", "api.stripe.invalid")
    with pytest.raises(BillingError) as err:
        _gateway(NOWHERE).retrieve_subscription("sub_P")
    assert err.value.retryable
    assert len(stripe_api.calls("GET", "/v1/subscriptions/sub_P")) == 1  # it went straight (and failed)


def _closed_port() -> str:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    return f"http://127.0.0.1:{port}"


def test_a_refused_connection_is_retried_then_reported_as_retryable(stripe_api):
    with pytest.raises(BillingError) as err:
        _gateway(_closed_port(), retries=1).retrieve_subscription("sub_X")
    assert err.value.retryable
    assert "communicating with Stripe" in err.value.detail and "Connection" in err.value.detail


def test_stripes_own_errors_come_through_as_stripe_said_them(stripe_api):
    stripe_api.on("GET", "/v1/subscriptions/sub_gone",
                  stripe_error(404, "invalid_request_error", "No such subscription: 'sub_gone'", "resource_missing"))
    with pytest.raises(BillingError) as err:
        _gateway(stripe_api.url).retrieve_subscription("sub_gone")
    assert not err.value.retryable and "No such subscription" in err.value.detail


def test_a_subscription_id_cannot_reach_another_path(stripe_api):
    stripe_api.on("GET", "/v1/customers/cus_1", Reply(200, {"id": "cus_1", "object": "customer"}))
    with pytest.raises(BillingError):
        _gateway(stripe_api.url).retrieve_subscription("../customers/cus_1")
    assert stripe_api.calls("GET", "/v1/customers/cus_1") == []


@pytest.mark.parametrize("bad", [".", ".."])
def test_dot_ids_never_reach_another_stripe_path(stripe_api, bad):
    with pytest.raises(BillingError) as err:
        _gateway(stripe_api.url).retrieve_subscription(bad)
    assert not err.value.retryable
    assert stripe_api.requests == []


def test_proxy_credentials_in_the_url_are_sent(stripe_api, monkeypatch):
    stripe_api.on("GET", "/v1/subscriptions/sub_A", Reply(200, subscription(id="sub_A", customer="cus_A")))
    host = stripe_api.url.removeprefix("http://")
    monkeypatch.setenv("HTTP_PROXY", f"http://proxy%40user:s3cret@{host}")
    monkeypatch.delenv("NO_PROXY", raising=False)
    monkeypatch.delenv("no_proxy", raising=False)
    _gateway(NOWHERE).retrieve_subscription("sub_A")
    (call,) = stripe_api.calls("GET", "/v1/subscriptions/sub_A")
    import base64

    assert base64.b64decode(call.headers["proxy-authorization"].split()[1]) == b"proxy@user:s3cret"
