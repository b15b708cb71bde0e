"""Who may open what: every staff and API route against every kind of caller."""
from __future__ import annotations

import pytest

from ..support.factories import make_account
from ..support.staff import api_token, client_as

STAFF_PAGES = ["/staff", "/staff/members/{member}", "/staff/checkouts"]
ADMIN_PAGES = ["/staff/admin"]
MEMBER_API = ["/api/v1/members", "/api/v1/members/{member}"]
ENTITLEMENT_API = ["/api/v1/entitlements?member_id={member}", "/api/v1/entitlements?email=subject@example.org"]

# Token callers carry scopes; every other caller is a browser.
TOKENS = {
    "token entitlements:read": ("entitlements:read",),
    "token members:read": ("members:read",),
    "token both scopes": ("entitlements:read", "members:read"),
    "token organisations:read": ("organisations:read",),
    "token metrics:read": ("metrics:read",),
    "revoked token": ("entitlements:read", "members:read"),
}
CALLERS = ["anonymous", "member", "staff", "admin", *TOKENS]


def expected(caller: str, kind: str) -> int:
    if kind in ("staff", "admin"):
        if caller in ("anonymous", *TOKENS):
            return 302  # sent to log in: a token is no browser session
        if caller == "member" or (caller == "staff" and kind == "admin"):
            return 403
        return 200
    # API routes: a live token whose scopes name the route, else 401 (no or bad token) or 403.
    if caller not in TOKENS or caller == "revoked token":
        return 401
    needed = "members:read" if kind == "members" else "entitlements:read"
    return 200 if needed in TOKENS[caller] else 403


ROUTES = ([("staff", p) for p in STAFF_PAGES] + [("admin", p) for p in ADMIN_PAGES]
          + [("members", p) for p in MEMBER_API] + [("entitlements", p) for p in ENTITLEMENT_API])


@pytest.mark.parametrize("caller", CALLERS)
@pytest.mark.parametrize("kind, path", ROUTES)
def test_authorisation_matrix(app, caller, kind, path):
    member = make_account(app, email="subject@example.org", name="Subject")
    headers = {}
    if caller in TOKENS:
        client = app.test_client()
        token = api_token(app, revoked=caller == "revoked token", scopes=TOKENS[caller])
        headers["Authorization"] = f"Bearer {token}"
    else:
        client = client_as(app, caller)
    resp = client.get(path.format(member=member), headers=headers)
    resp.close()  # the CSV export streams: finish it as a WSGI server would
    assert resp.status_code == expected(caller, kind)
    if kind in ("members", "entitlements") and resp.status_code == 401:
        assert resp.json["error"]["code"] == "unauthorized"
        assert resp.headers["WWW-Authenticate"].startswith("Bearer")
    if resp.status_code == 403 and caller in TOKENS:
        assert resp.json["error"]["code"] == "insufficient_scope"
        assert 'error="insufficient_scope"' in resp.headers["WWW-Authenticate"]


@pytest.mark.parametrize("caller, expected", [("anonymous", 302), ("member", 403), ("staff", 403), ("admin", 200)])
@pytest.mark.parametrize("path, data", [
    ("/staff/admin/tokens", {"tok-name": "x", "tok-confirm": "y"}),
    ("/staff/admin/staff", {"add-email": "new@example.org", "add-name": "New", "add-role": "staff", "add-confirm": "y"}),
])
def test_only_admins_manage_staff_and_tokens(app, caller, expected, path, data):
    from ..support.web import csrf_from

    client = client_as(app, caller)
    token = csrf_from(client.get("/logout").get_data(as_text=True))
    resp = client.post(path, data={**data, "csrf_token": token})
    assert resp.status_code in ((303, 200) if expected == 200 else (expected,))


@pytest.mark.parametrize("caller", ["anonymous", "member"])
@pytest.mark.parametrize("action", ["comp", "comp/revoke", "send-reset"])
def test_members_and_strangers_cannot_act_on_members(app, caller, action):
    from ..support.web import csrf_from

    member = make_account(app, email="subject@example.org")
    client = client_as(app, caller)
    token = csrf_from(client.get("/logout").get_data(as_text=True))
    resp = client.post(f"/staff/members/{member}/{action}", data={"csrf_token": token, "confirm": "y",
                                                                  "comp-reason": "x", "comp-confirm": "y"})
    assert resp.status_code == (302 if caller == "anonymous" else 403)


@pytest.mark.parametrize("caller, expected", [("anonymous", 302), ("member", 403), ("staff", 303), ("admin", 303)])
def test_only_staff_start_exports(app, caller, expected):
    from ..support.web import csrf_from

    client = client_as(app, caller)
    token = csrf_from(client.get("/logout").get_data(as_text=True))
    assert client.post("/staff/exports", data={"csrf_token": token}).status_code == expected
