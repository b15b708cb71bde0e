"""The JSON API: members, entitlements, JSON errors with the right status; never calls Stripe."""
from __future__ import annotations

import time
from datetime import datetime, timedelta, timezone

import pytest

from service.domain.membership import MembershipStatus as S

from ..support.events import event, post_event
from ..support.factories import make_account
from ..support.staff import api_token
from ..support.stripe_objects import subscription

NOW = int(time.time())


@pytest.fixture
def api(app):
    token = api_token(app)
    client = app.test_client()

    def get(path, **kw):
        return client.get(path, headers={"Authorization": f"Bearer {token}"}, **kw)

    return get


def test_entitlement_by_email_and_by_member_id(app, api, stripe_api):
    member = make_account(app, email="Reader@Example.org", customer="cus_E")
    end = NOW + 30 * 86400
    post_event(app.test_client(), event("customer.subscription.created",
               subscription(id="sub_E", customer="cus_E", status="active", member_id=member, period_end=end)))
    stripe_api.reset()
    by_email = api("/api/v1/entitlements?email=READER@example.org")
    by_id = api(f"/api/v1/entitlements?member_id={member}")
    expected = {"entitled": True, "status": "active", "level": "Member",
                "paid_through": datetime.fromtimestamp(end, tz=timezone.utc).isoformat(),
                "via": "membership", "organisation": None}
    assert by_email.status_code == 200 and by_email.json == expected
    assert by_id.json == expected
    assert stripe_api.requests == []  # answered from the database alone


@pytest.mark.parametrize("status, via", [(S.PENDING, None), (S.PAST_DUE, "membership"), (S.COMPED, "comp"),
                                         (S.LAPSED, None), (S.PAUSED, None), (S.CANCELED, None)])
def test_entitlement_follows_the_state(app, api, status, via):
    member = make_account(app, status=status)
    assert api(f"/api/v1/entitlements?member_id={member}").json == {
        "entitled": via is not None, "status": status.value, "paid_through": None, "level": None, "via": via,
        "organisation": None}


@pytest.mark.parametrize("query, status, code", [
    ("", 422, "validation_error"),
    ("?email=a@b.org&member_id=1", 422, "validation_error"),
    ("?member_id=abc", 422, "validation_error"),
    ("?member_id=999999", 404, "not_found"),
    ("?email=nobody@example.org", 404, "not_found"),
])
def test_entitlement_errors_are_json(app, api, query, status, code):
    resp = api(f"/api/v1/entitlements{query}")
    assert resp.status_code == status and resp.json["error"]["code"] == code
    assert resp.json["error"]["message"]


def test_member_by_id_has_the_contract_fields(app, api):
    member = make_account(app, email="m@example.org", name="Mo Member")
    body = api(f"/api/v1/members/{member}").json
    assert set(body) == {"id", "email", "name", "status", "entitled", "paid_through", "cancel_at_period_end",
                         "stripe_customer_id", "newsletter", "level", "via", "organisation", "created_at"}
    assert body["level"] is None and body["via"] is None and body["organisation"] is None
    assert body["newsletter"] == {"status": "not_subscribed", "synced_at": None}
    assert body["created_at"].endswith("+00:00")
    assert api("/api/v1/members/999999").status_code == 404


def test_members_list_filters_and_pages(app, api):
    start = datetime(2026, 1, 1, tzinfo=timezone.utc)
    for i in range(7):
        make_account(app, email=f"l{i}@example.org", name=f"List {i}", status=S.ACTIVE if i % 2 else S.PENDING,
                     created_at=start + timedelta(days=i))
    page = api("/api/v1/members?status=active&per_page=2&sort=oldest").json
    assert (page["total"], page["total_is_estimate"], page["page"]) == (3, False, 1)
    assert [m["email"] for m in page["members"]] == ["l1@example.org", "l3@example.org"]
    after = api(f"/api/v1/members?status=active&per_page=2&sort=oldest&cursor={page['next_cursor']}").json
    assert [m["email"] for m in after["members"]] == ["l5@example.org"] and after["next_cursor"] is None
    assert [m["email"] for m in api("/api/v1/members?status=active&per_page=2&sort=oldest&page=2").json["members"]] \
        == ["l5@example.org"]
    assert api("/api/v1/members?cursor=nonsense").status_code == 422
    assert api("/api/v1/members?email=L4@example.org").json["total"] == 1
    assert api("/api/v1/members?q=list%206").json["members"][0]["email"] == "l6@example.org"
    assert api("/api/v1/members?entitled=false").json["total"] == 4
    bad = api("/api/v1/members?status=bogus&per_page=1000")
    assert bad.status_code == 422 and set(bad.json["error"]["fields"]) == {"status", "per_page"}


def test_api_rate_limit_answers_429_json_but_never_on_the_paywall_check(make_app):
    app = make_app(RATELIMIT_API="2 per minute")
    token = api_token(app)
    member = make_account(app)
    client = app.test_client()
    headers = {"Authorization": f"Bearer {token}"}
    codes = [client.get(f"/api/v1/members/{member}", headers=headers).status_code for _ in range(3)]
    assert codes == [200, 200, 429]
    last = client.get(f"/api/v1/members/{member}", headers=headers)
    assert last.status_code == 429 and last.json["error"]["code"] == "rate_limited"
    # The website asks on every premium page: a spike must never become 429s for readers.
    assert [client.get(f"/api/v1/entitlements?member_id={member}", headers=headers).status_code
            for _ in range(5)] == [200] * 5


def test_malformed_authorization_is_401(app):
    client = app.test_client()
    for header in ("Basic abc", "Bearer", "Bearer dawns_not-a-real-token", "Token x"):
        resp = client.get("/api/v1/members", headers={"Authorization": header})
        assert resp.status_code == 401


def test_tokens_cli_creates_once_stores_hash_and_revokes(app, runner):
    from sqlalchemy import select

    from service.db import get_session
    from service.models import ApiToken

    created = runner.invoke(args=["tokens", "create", "website", "--scope", "members:read"])
    token = created.stdout.strip()
    assert created.exit_code == 0 and token.startswith("dawns_")
    with app.app_context():
        row = get_session().scalars(select(ApiToken)).one()
        assert row.token_hash != token and len(row.token_hash) == 64
    client = app.test_client()
    assert client.get("/api/v1/members", headers={"Authorization": f"Bearer {token}"}).status_code == 200
    assert runner.invoke(args=["tokens", "create", "website"]).exit_code != 0
    assert runner.invoke(args=["tokens", "revoke", "website"]).exit_code == 0
    assert client.get("/api/v1/members", headers={"Authorization": f"Bearer {token}"}).status_code == 401


def test_revocation_reaches_the_paywall_check_within_the_token_cache_time(make_app, runner):
    immediate = make_app(API_TOKEN_CACHE_SECONDS=0)
    member = make_account(immediate)
    token = api_token(immediate, name="edge")
    client = immediate.test_client()
    headers = {"Authorization": f"Bearer {token}"}
    assert client.get(f"/api/v1/entitlements?member_id={member}", headers=headers).status_code == 200
    with immediate.app_context():
        from service.accounts.api_tokens import revoke_token

        revoke_token("edge")
    assert client.get(f"/api/v1/entitlements?member_id={member}", headers=headers).status_code == 401
    assert client.get(f"/api/v1/members/{member}", headers=headers).status_code == 401
