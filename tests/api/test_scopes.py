"""API tokens have scopes, one auth path serves every route, and no token leaks anywhere."""
from __future__ import annotations

import hashlib
import logging
import uuid

import pytest
from sqlalchemy import create_engine, select

from service.db import get_session
from service.models import ApiToken

from ..support.factories import make_account
from ..support.staff import api_token, client_as
from ..support.web import csrf_from


def _get(client, path, token):
    return client.get(path, headers={"Authorization": f"Bearer {token}"})


def test_cli_default_scope_is_entitlements_read_only_and_says_so(app, runner):
    member = make_account(app)
    result = runner.invoke(args=["tokens", "create", "paywall"])
    assert result.exit_code == 0
    assert "no --scope given: the token gets entitlements:read only" in result.stderr
    token = result.stdout.strip()
    client = app.test_client()
    assert _get(client, f"/api/v1/entitlements?member_id={member}", token).status_code == 200
    refused = _get(client, "/api/v1/members", token)
    assert refused.status_code == 403
    assert refused.json["error"]["code"] == "insufficient_scope"
    assert refused.headers["WWW-Authenticate"] == ('Bearer realm="dawns-membership", error="insufficient_scope", '
                                                   'scope="members:read"')


def test_cli_scope_repeats_and_unknown_scopes_or_bad_names_are_refused(app, runner):
    ok = runner.invoke(args=["tokens", "create", "crm.sync-1", "--scope", "members:read", "--scope",
                             "entitlements:read", "--scope", "members:read"])
    assert ok.exit_code == 0 and ok.stderr == ""
    with app.app_context():
        row = get_session().scalars(select(ApiToken).where(ApiToken.name == "crm.sync-1")).one()
        assert row.scopes == "members:read entitlements:read"
    assert _get(app.test_client(), "/api/v1/members", ok.stdout.strip()).status_code == 200
    bad_scope = runner.invoke(args=["tokens", "create", "x", "--scope", "members:write"])
    assert bad_scope.exit_code != 0 and "Unknown scope 'members:write'" in bad_scope.output
    for name in ("has space", "slash/name", "x" * 65, "ünïcode", "", "website\n"):
        bad = runner.invoke(args=["tokens", "create", name])
        assert bad.exit_code != 0 and "A token name uses letters, digits" in bad.output, name
    with app.app_context():
        assert get_session().scalars(select(ApiToken.name)).all() == ["crm.sync-1"]


def test_admin_page_creates_a_token_with_the_chosen_scopes_and_revokes_any_name_by_id(app):
    admin = client_as(app, "admin")
    page = admin.get("/staff/admin").get_data(as_text=True)
    assert 'checked id="tok-scopes-0" name="tok-scopes" type="checkbox" value="entitlements:read"' in page
    assert 'value="metrics:read"' in page
    created = admin.post("/staff/admin/tokens", data={
        "csrf_token": csrf_from(page), "tok-name": "analytics", "tok-scopes": ["members:read"], "tok-confirm": "y"})
    html = created.get_data(as_text=True)
    token = html.split('<code class="token">')[1].split("</code>")[0]
    assert _get(app.test_client(), "/api/v1/members", token).status_code == 200
    assert _get(app.test_client(), "/api/v1/entitlements?member_id=1", token).status_code == 403
    # A name from before names were checked (spaces, slashes) is still revocable: by id.
    with app.app_context():
        s = get_session()
        legacy = ApiToken(name="old token/1", token_hash=hashlib.sha256(b"dawns_legacy").hexdigest(),
                          scopes="entitlements:read")
        s.add(legacy)
        s.commit()
        legacy_id = legacy.id
    resp = admin.post(f"/staff/admin/tokens/{legacy_id}/revoke", data={
        "csrf_token": csrf_from(admin.get("/staff/admin").get_data(as_text=True)), "confirm": "y"})
    assert resp.status_code == 303
    with app.app_context():
        assert get_session().get(ApiToken, legacy_id).revoked_at is not None
    assert _get(app.test_client(), "/api/v1/entitlements?member_id=1", "dawns_legacy").status_code == 401


def test_admin_page_refuses_a_bad_name_or_no_scope(app):
    admin = client_as(app, "admin")
    for data in ({"tok-name": "bad name", "tok-scopes": ["members:read"]}, {"tok-name": "fine"}):
        page = admin.get("/staff/admin").get_data(as_text=True)
        resp = admin.post("/staff/admin/tokens", data={"csrf_token": csrf_from(page), "tok-confirm": "y", **data})
        assert resp.status_code == 303
    with app.app_context():
        assert get_session().scalars(select(ApiToken)).all() == []


def _redis_up() -> bool:
    import socket

    try:
        socket.create_connection(("127.0.0.1", 6379), timeout=0.5).close()
        return True
    except OSError:
        return False


@pytest.mark.skipif(not _redis_up(), reason="no Redis on 127.0.0.1:6379")
def test_no_token_raw_or_hashed_is_ever_part_of_a_redis_rate_limit_key(make_app):
    import redis

    db = uuid.uuid4().int % 15 + 1
    store = redis.Redis(host="127.0.0.1", port=6379, db=db)
    store.flushdb()
    app = make_app(RATELIMIT_STORAGE_URI=f"redis://127.0.0.1:6379/{db}")
    token = api_token(app)
    member = make_account(app)
    client = app.test_client()
    for path in ("/api/v1/members", f"/api/v1/members/{member}", f"/api/v1/entitlements?member_id={member}"):
        assert _get(client, path, token).status_code == 200
    keys = [k.decode() for k in store.keys("*")]
    store.flushdb()
    with app.app_context():
        token_id = get_session().scalars(select(ApiToken.id)).one()
    digest = hashlib.sha256(token.encode()).hexdigest()
    assert keys, "the limiter wrote nothing"
    assert any(f"api-token:{token_id}" in k for k in keys)
    secret_part = token.removeprefix("dawns_")
    assert not any(secret_part in k or digest in k or token in k for k in keys)


def test_no_token_appears_in_logs_or_error_bodies(app, caplog):
    token = api_token(app, scopes=("entitlements:read",))
    revoked = api_token(app, name="gone", revoked=True)
    client = app.test_client()
    caplog.set_level(logging.DEBUG)
    bodies = [_get(client, "/api/v1/members", t).get_data(as_text=True) for t in (token, revoked, token + "x")]
    bodies.append(_get(client, "/api/v1/entitlements?member_id=abc", revoked).get_data(as_text=True))
    for secret in (token, revoked):
        digest = hashlib.sha256(secret.encode()).hexdigest()
        for text in [*bodies, caplog.text]:
            assert secret.removeprefix("dawns_") not in text and digest not in text


def test_a_member_id_beyond_32_bits_is_404_not_a_server_error(app):
    token = api_token(app)
    for big in (2**31, 2**63, 10**30):
        resp = _get(app.test_client(), f"/api/v1/members/{big}", token)
        assert resp.status_code == 404 and resp.json["error"]["code"] == "not_found"


def test_method_not_allowed_names_the_allowed_methods(app):
    token = api_token(app)
    client = app.test_client()
    api = client.post("/api/v1/members", headers={"Authorization": f"Bearer {token}"})
    assert api.status_code == 405 and set(api.headers["Allow"].split(", ")) >= {"GET", "HEAD"}
    assert api.json["error"]["code"] == "method_not_allowed"
    fast = client.post("/api/v1/entitlements", headers={"Authorization": f"Bearer {token}"})
    assert fast.status_code == 405 and fast.headers["Allow"] == "GET, HEAD"
    page = client.delete("/join")
    assert page.status_code == 405 and "GET" in page.headers["Allow"]


DEAD_DB = "postgresql+psycopg://postgres@127.0.0.1:1/none?connect_timeout=2"


@pytest.mark.parametrize("query", ["email=reader@example.org", "member_id={member}", "member_id=abc",
                                   "email=a@b.org&member_id=1", "", "email=reader@example.org&x=1"])
@pytest.mark.parametrize("warm", [False, True], ids=["cold token", "token known live"])
def test_the_fast_path_answers_json_503_on_every_branch_while_the_database_is_down(make_app, query, warm):
    app = make_app(API_TOKEN_CACHE_SECONDS=60 if warm else 0)
    member = make_account(app)
    token = api_token(app, scopes=("entitlements:read",))
    client = app.test_client()
    if warm:
        assert _get(client, f"/api/v1/entitlements?member_id={member}", token).status_code == 200
    dead = create_engine(DEAD_DB)
    live = app.extensions["db_read_engine"], app.extensions["db_engine"]
    app.extensions["db_read_engine"] = app.extensions["db_engine"] = dead
    try:
        resp = _get(client, "/api/v1/entitlements?" + query.format(member=member), token)
    finally:
        app.extensions["db_read_engine"], app.extensions["db_engine"] = live
        dead.dispose()
    assert resp.status_code == 503, resp.get_data(as_text=True)
    assert resp.headers["Content-Type"] == "application/json"
    assert resp.json["error"]["code"] == "unavailable"


def test_a_revoked_tokens_name_can_be_given_to_its_replacement(app, runner):
    first = runner.invoke(args=["tokens", "create", "website"]).stdout.strip()
    assert runner.invoke(args=["tokens", "revoke", "website"]).exit_code == 0
    again = runner.invoke(args=["tokens", "create", "website"])
    assert again.exit_code == 0, again.output
    second = again.stdout.strip()
    client = app.test_client()
    assert _get(client, "/api/v1/entitlements?member_id=1", first).status_code == 401
    assert _get(client, "/api/v1/entitlements?member_id=1", second).status_code == 404  # live; no such member
    listing = runner.invoke(args=["tokens", "list"]).output
    assert listing.count("website") == 2 and "revoked" in listing and "live" in listing
    assert first not in listing and second not in listing
    assert runner.invoke(args=["tokens", "create", "website"]).exit_code != 0  # one live token per name


def test_an_invalid_token_is_named_so_in_the_challenge(app):
    resp = _get(app.test_client(), "/api/v1/members", "dawns_unknown")
    assert resp.status_code == 401
    assert resp.headers["WWW-Authenticate"] == 'Bearer realm="dawns-membership", error="invalid_token"'
    missing = app.test_client().get("/api/v1/members")
    assert missing.headers["WWW-Authenticate"] == 'Bearer realm="dawns-membership"'


# --- organisations:read (SPEC "Organisations"): every API route against every set of scopes ----

SCOPE_SETS = {
    "entitlements": ("entitlements:read",),
    "members": ("members:read",),
    "organisations": ("organisations:read",),
    "metrics": ("metrics:read",),
    "members+organisations": ("members:read", "organisations:read"),
    "all": ("entitlements:read", "members:read", "organisations:read", "metrics:read"),
}
API_ROUTES = {
    "/api/v1/members": "members:read",
    "/api/v1/members/{member}": "members:read",
    "/api/v1/entitlements?member_id={member}": "entitlements:read",
    "/api/v1/organisations": "organisations:read",
    "/api/v1/organisations/{organisation}": "organisations:read",
}


@pytest.mark.parametrize("scopes", SCOPE_SETS)
def test_every_api_route_against_every_scope_set(app, scopes):
    from .organisation_rows import make_organisation

    member = make_account(app, email="subject@unicef.org")
    organisation = make_organisation(app, seats=[member])
    token = api_token(app, scopes=SCOPE_SETS[scopes])
    client = app.test_client()
    for path, needed in API_ROUTES.items():
        resp = _get(client, path.format(member=member, organisation=organisation), token)
        if needed in SCOPE_SETS[scopes]:
            assert resp.status_code == 200, (path, resp.get_data(as_text=True))
        else:
            assert resp.status_code == 403, path
            assert resp.json["error"]["code"] == "insufficient_scope"
            assert resp.headers["WWW-Authenticate"].endswith(f'scope="{needed}"')


def test_cli_and_admin_page_offer_the_organisations_read_scope(app, runner):
    from .organisation_rows import make_organisation

    organisation = make_organisation(app)
    made = runner.invoke(args=["tokens", "create", "crm-orgs", "--scope", "organisations:read"])
    assert made.exit_code == 0, made.output
    client = app.test_client()
    assert _get(client, f"/api/v1/organisations/{organisation}", made.stdout.strip()).status_code == 200
    assert "organisations:read" in runner.invoke(args=["tokens", "create", "--help"]).output
    admin = client_as(app, "admin")
    page = admin.get("/staff/admin").get_data(as_text=True)
    assert 'name="tok-scopes" type="checkbox" value="organisations:read"' in page
    created = admin.post("/staff/admin/tokens", data={
        "csrf_token": csrf_from(page), "tok-name": "org-report", "tok-scopes": ["organisations:read"],
        "tok-confirm": "y"})
    token = created.get_data(as_text=True).split('<code class="token">')[1].split("</code>")[0]
    assert _get(client, "/api/v1/organisations", token).status_code == 200
    assert _get(client, "/api/v1/members", token).status_code == 403
