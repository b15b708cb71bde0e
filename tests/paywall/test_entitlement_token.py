"""The reader-side entitlement token: verifiable offline with the published key."""
from __future__ import annotations

import base64
import json

import jwt
import pytest

from service.domain.membership import MembershipStatus as S
from service.paywall.keys import generate_pem

from ..conftest import PAYWALL_PUBLIC_PEM
from ..support.factories import PASSWORD, make_account
from ..support.web import login


def _token(app, status=S.ACTIVE):
    make_account(app, status=status)
    client = app.test_client()
    login(client, "reader@example.org", PASSWORD)
    resp = client.get("/paywall/token")
    assert resp.status_code == 200
    return resp.json


def verify(app_or_client, token: str) -> dict:
    """What the website or a CDN edge does: fetch the JWKS once, pick the key by kid, verify."""
    client = app_or_client.test_client() if hasattr(app_or_client, "test_client") else app_or_client
    jwks = client.get("/.well-known/jwks.json").json
    kid = jwt.get_unverified_header(token)["kid"]
    matches = [k for k in jwks["keys"] if k["kid"] == kid]
    if not matches:
        raise jwt.InvalidKeyError(f"no published key {kid}")
    key = jwt.PyJWK(matches[0])
    return jwt.decode(token, key.key, algorithms=["ES256"], audience="dawns-paywall")


def test_token_verifies_with_the_published_key_and_carries_the_entitlement(app):
    body = _token(app)
    claims = verify(app, body["token"])
    assert jwt.get_unverified_header(body["token"])["kid"] == "test-key-1"
    assert claims["status"] == "active" and claims["entitled"] is True and claims["sub"].isdigit()
    assert claims["exp"] - claims["iat"] == app.config["PAYWALL_TOKEN_TTL"]
    assert body["expires_at"].endswith("+00:00")


def test_token_for_a_reader_who_is_not_entitled_says_so(app):
    claims = verify(app, _token(app, S.CANCELED)["token"])
    assert claims["entitled"] is False and claims["status"] == "canceled"


def test_anonymous_gets_401_json(client):
    resp = client.get("/paywall/token")
    assert resp.status_code == 401 and resp.json["error"]["code"] == "unauthorized"


def test_token_fails_after_expiry(make_app):
    app = make_app(PAYWALL_TOKEN_TTL=-5)
    with pytest.raises(jwt.ExpiredSignatureError):
        verify(app, _token(app)["token"])


def test_tampered_token_fails(app):
    token = _token(app, S.CANCELED)["token"]
    header, payload, signature = token.split(".")
    claims = json.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)))
    claims.update(entitled=True, status="active")
    forged = base64.urlsafe_b64encode(json.dumps(claims).encode()).decode().rstrip("=")
    with pytest.raises(jwt.InvalidSignatureError):
        verify(app, f"{header}.{forged}.{signature}")


def test_rotation_keeps_old_tokens_valid_until_the_old_key_is_dropped(make_app):
    old_app = make_app()
    token = _token(old_app)["token"]
    new_private, _ = generate_pem()
    rotated = make_app(PAYWALL_JWT_PRIVATE_KEY=new_private, PAYWALL_JWT_KID="test-key-2",
                       PAYWALL_JWT_PREVIOUS_KEYS=json.dumps({"test-key-1": PAYWALL_PUBLIC_PEM}))
    kids = [k["kid"] for k in rotated.test_client().get("/.well-known/jwks.json").json["keys"]]
    assert kids == ["test-key-2", "test-key-1"]
    assert verify(rotated, token)["entitled"] is True
    # New tokens are signed with the new key.
    fresh = rotated.test_client()
    login(fresh, "reader@example.org", PASSWORD)
    assert jwt.get_unverified_header(fresh.get("/paywall/token").json["token"])["kid"] == "test-key-2"
    # Once the old key is no longer published, its tokens fail.
    dropped = make_app(PAYWALL_JWT_PRIVATE_KEY=new_private, PAYWALL_JWT_KID="test-key-2")
    with pytest.raises(jwt.InvalidKeyError):
        verify(dropped, token)


def test_cors_only_for_configured_publisher_origins(make_app):
    app = make_app(PAYWALL_CORS_ORIGINS=["https://www.dawns.example"])
    client = app.test_client()
    allowed = client.get("/.well-known/jwks.json", headers={"Origin": "https://www.dawns.example"})
    other = client.get("/.well-known/jwks.json", headers={"Origin": "https://evil.example"})
    assert allowed.headers["Access-Control-Allow-Origin"] == "https://www.dawns.example"
    assert "Access-Control-Allow-Origin" not in other.headers
    api = client.get("/api/v1/members", headers={"Origin": "https://www.dawns.example"})
    assert "Access-Control-Allow-Origin" not in api.headers
