"""Who may open what: every staff and API route against every kind of caller."""
from __future__ import annotations

import pytest

from ..support.factories import make_account
from ..support.staff import api_token, client_as

STAFF_PAGES = ["/staff", "/staff/members/{member}", "/staff/export.csv"]
ADMIN_PAGES = ["/staff/admin"]
API_ROUTES = ["/api/v1/members", "/api/v1/members/{member}", "/api/v1/entitlements?member_id={member}"]

CALLERS = ["anonymous", "member", "staff", "admin", "valid token", "revoked token"]

# Expected status per (caller, kind of route).
EXPECTED = {
    ("anonymous", "staff"): 302, ("anonymous", "admin"): 302, ("anonymous", "api"): 401,
    ("member", "staff"): 403, ("member", "admin"): 403, ("member", "api"): 401,
    ("staff", "staff"): 200, ("staff", "admin"): 403, ("staff", "api"): 401,
    ("admin", "staff"): 200, ("admin", "admin"): 200, ("admin", "api"): 401,
    ("valid token", "staff"): 302, ("valid token", "admin"): 302, ("valid token", "api"): 200,
    ("revoked token", "staff"): 302, ("revoked token", "admin"): 302, ("revoked token", "api"): 401,
}

ROUTES = [("staff", p) for p in STAFF_PAGES] + [("admin", p) for p in ADMIN_PAGES] + [("api", p) for p in API_ROUTES]


@pytest.mark.parametrize("caller", CALLERS)
@pytest.mark.parametrize("kind, path", ROUTES)
def test_authorisation_matrix(app, caller, kind, path):
    member = make_account(app, email="subject@example.org", name="Subject")
    headers = {}
    if caller.endswith("token"):
        client = app.test_client()
        headers["Authorization"] = f"Bearer {api_token(app, revoked=caller == 'revoked token')}"
    else:
        client = client_as(app, caller)
    resp = client.get(path.format(member=member), headers=headers)
    resp.close()  # the CSV export streams: finish it as a WSGI server would
    assert resp.status_code == EXPECTED[(caller, kind)]
    if kind == "api" and resp.status_code == 401:
        assert resp.json["error"]["code"] == "unauthorized"
        assert resp.headers["WWW-Authenticate"].startswith("Bearer")


@pytest.mark.parametrize("caller, expected", [("anonymous", 302), ("member", 403), ("staff", 403), ("admin", 200)])
@pytest.mark.parametrize("path, data", [
    ("/staff/admin/tokens", {"tok-name": "x", "tok-confirm": "y"}),
    ("/staff/admin/staff", {"add-email": "new@example.org", "add-name": "New", "add-role": "staff", "add-confirm": "y"}),
])
def test_only_admins_manage_staff_and_tokens(app, caller, expected, path, data):
    from ..support.web import csrf_from

    client = client_as(app, caller)
    token = csrf_from(client.get("/join").get_data(as_text=True))
    resp = client.post(path, data={**data, "csrf_token": token})
    assert resp.status_code in ((303, 200) if expected == 200 else (expected,))


@pytest.mark.parametrize("caller", ["anonymous", "member"])
@pytest.mark.parametrize("action", ["comp", "comp/revoke", "send-reset"])
def test_members_and_strangers_cannot_act_on_members(app, caller, action):
    from ..support.web import csrf_from

    member = make_account(app, email="subject@example.org")
    client = client_as(app, caller)
    token = csrf_from(client.get("/join").get_data(as_text=True))
    resp = client.post(f"/staff/members/{member}/{action}", data={"csrf_token": token, "confirm": "y",
                                                                  "comp-reason": "x", "comp-confirm": "y"})
    assert resp.status_code == (302 if caller == "anonymous" else 403)
