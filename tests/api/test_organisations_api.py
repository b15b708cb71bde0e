"""Organisations in the API (SPEC "Organisations", "Contract"): `via` and `organisation` in the
member JSON, the entitlement answer (the fast path, token cold or known live) and the paywall's
JWT; GET /api/v1/organisations[/<id>] under `organisations:read`; the CSV export's columns."""
from __future__ import annotations

import csv
import io
import itertools
import time
from datetime import timedelta

import pytest
from sqlalchemy import select, update

from service.db import get_session, utcnow
from service.domain.membership import MembershipStatus as S, Role
from service.models import Account, Membership, Organisation, Seat

from ..support.events import event, post_event
from ..support.factories import PASSWORD, make_account
from ..support.staff import api_token
from ..support.stripe_objects import subscription
from ..support.web import login
from .organisation_rows import end_comp, make_organisation

ALL_READ = ("entitlements:read", "members:read", "organisations:read")
UNICEF = {"name": "UNICEF", "slug": "unicef"}
_names = itertools.count(1)


def _client(app, scopes=ALL_READ, name="website"):
    token = api_token(app, name=name, scopes=scopes)
    client = app.test_client()

    def get(path):
        return client.get(path, headers={"Authorization": f"Bearer {token}"})

    return get


def _entitlement(app, query: str, *, warm: bool):
    """The fast path's answer: with the token read in the same statement (cold), or known live
    (the statement without the token's row)."""
    get = _client(app, scopes=("entitlements:read",), name=f"paywall-{next(_names)}")
    if warm:
        assert get(f"/api/v1/entitlements?{query}").status_code in (200, 404)
    resp = get(f"/api/v1/entitlements?{query}")
    assert resp.status_code == 200, resp.get_data(as_text=True)
    return resp.json


def _own_membership(app, member: int, customer: str) -> None:
    """The reader's own paid membership, from a Stripe event as in production."""
    end = int(time.time()) + 30 * 86400
    post_event(app.test_client(), event("customer.subscription.created", subscription(
        id=f"sub_{customer}", customer=customer, status="active", member_id=member, period_end=end)))


# --- member JSON -------------------------------------------------------------------------------

def test_member_json_names_the_organisation_whose_seat_entitles(app):
    seated = make_account(app, email="ana@unicef.org", name="Ana")
    comped = make_account(app, email="comped@example.org", status=S.COMPED)
    nobody = make_account(app, email="nobody@example.org")
    make_organisation(app, name="UNICEF", seats=[seated])
    get = _client(app)
    body = get(f"/api/v1/members/{seated}").json
    assert (body["status"], body["entitled"], body["via"], body["organisation"]) == ("organisation", True,
                                                                                     "organisation", UNICEF)
    assert (get(f"/api/v1/members/{comped}").json["via"], get(f"/api/v1/members/{comped}").json["organisation"]) \
        == ("comp", None)
    assert (get(f"/api/v1/members/{nobody}").json["via"], get(f"/api/v1/members/{nobody}").json["organisation"]) \
        == (None, None)
    listed = {m["email"]: m for m in get("/api/v1/members?status=organisation").json["members"]}
    assert set(listed) == {"ana@unicef.org"}
    assert listed["ana@unicef.org"]["via"] == "organisation" and listed["ana@unicef.org"]["organisation"] == UNICEF
    everyone = {m["email"]: (m["via"], m["organisation"]) for m in get("/api/v1/members").json["members"]}
    assert everyone == {"ana@unicef.org": ("organisation", UNICEF), "comped@example.org": ("comp", None),
                        "nobody@example.org": (None, None)}


def test_a_readers_own_paid_membership_takes_precedence_over_a_seat(app, stripe_api):
    member = make_account(app, email="paying@unicef.org", customer="cus_OWN")
    _own_membership(app, member, "cus_OWN")
    make_organisation(app, seats=[member])
    body = _client(app)(f"/api/v1/members/{member}").json
    assert (body["status"], body["via"], body["organisation"]) == ("active", "membership", None)
    for warm in (False, True):
        answer = _entitlement(app, f"member_id={member}", warm=warm)
        assert (answer["via"], answer["organisation"]) == ("membership", None)


# --- the entitlement answer (fast path) --------------------------------------------------------

@pytest.mark.parametrize("warm", [False, True], ids=["cold token", "token known live"])
def test_entitlement_answer_carries_via_and_the_organisation(app, warm):
    seated = make_account(app, email="Ana@UNICEF.org")
    make_organisation(app, seats=[seated])
    expected = {"entitled": True, "status": "organisation", "paid_through": None, "level": None,
                "via": "organisation", "organisation": UNICEF}
    assert _entitlement(app, f"member_id={seated}", warm=warm) == expected
    assert _entitlement(app, "email=ana@unicef.org", warm=warm) == expected


@pytest.mark.parametrize("warm", [False, True], ids=["cold token", "token known live"])
def test_a_seat_whose_organisation_stopped_entitling_gives_no_via_nor_organisation(app, warm):
    seated = make_account(app, email="ana@unicef.org")
    org = make_organisation(app, seats=[seated])
    end_comp(app, org)
    answer = _entitlement(app, f"member_id={seated}", warm=warm)
    assert (answer["entitled"], answer["via"], answer["organisation"]) == (False, None, None)
    body = _client(app, name="crm")(f"/api/v1/members/{seated}").json
    assert (body["entitled"], body["via"], body["organisation"]) == (False, None, None)


@pytest.mark.parametrize("warm", [False, True], ids=["cold token", "token known live"])
def test_via_is_decided_at_the_read_when_the_seat_window_ran_out_before_a_recompute(app, warm):
    """The stored state still says `organisation`, but its end has passed: not entitled, so no
    organisation is named (the same read-time rule as a grace period)."""
    seated = make_account(app, email="ana@unicef.org")
    make_organisation(app, seats=[seated])
    with app.app_context():
        s = get_session()
        s.execute(update(Membership).where(Membership.account_id == seated)
                  .values(paid_through=utcnow() - timedelta(minutes=1)))
        s.commit()
    answer = _entitlement(app, f"member_id={seated}", warm=warm)
    assert (answer["status"], answer["entitled"], answer["via"], answer["organisation"]) == (
        "organisation", False, None, None)
    body = _client(app, name="crm")(f"/api/v1/members/{seated}").json
    assert (body["entitled"], body["via"], body["organisation"]) == (False, None, None)


def test_a_comp_keeps_a_seat_only_reader_entitled_through_the_comp(app):
    seated = make_account(app, email="ana@unicef.org")
    org = make_organisation(app, seats=[seated])
    with app.app_context():
        s = get_session()
        s.execute(update(Membership).where(Membership.account_id == seated).values(comped_at=utcnow()))
        s.commit()
    end_comp(app, org)  # the seat no longer entitles; the reader's own comp does
    answer = _entitlement(app, f"member_id={seated}", warm=False)
    assert (answer["status"], answer["via"], answer["organisation"]) == ("comped", "comp", None)


# --- the paywall's JWT ---------------------------------------------------------------------------

def _claims(app, email: str) -> dict:
    from ..paywall.test_entitlement_token import verify

    client = app.test_client()
    login(client, email, PASSWORD)
    resp = client.get("/paywall/token")
    assert resp.status_code == 200
    return verify(app, resp.json["token"])


def test_jwt_claims_carry_via_and_the_organisation(app):
    seated = make_account(app, email="ana@unicef.org")
    make_account(app, email="comped@example.org", status=S.COMPED)
    make_account(app, email="pending@example.org")
    make_organisation(app, seats=[seated])
    claims = _claims(app, "ana@unicef.org")
    assert (claims["status"], claims["entitled"], claims["via"], claims["organisation"]) == (
        "organisation", True, "organisation", UNICEF)
    comped = _claims(app, "comped@example.org")
    assert (comped["via"], comped["organisation"]) == ("comp", None)
    pending = _claims(app, "pending@example.org")
    assert (pending["entitled"], pending["via"], pending["organisation"]) == (False, None, None)


def test_jwt_claims_after_the_seat_is_removed(app):
    from service.membership.organisations import remove_seat

    seated = make_account(app, email="ana@unicef.org")
    org = make_organisation(app, seats=[seated])
    with app.app_context():
        s = get_session()
        remove_seat(s, s.scalars(select(Seat).where(Seat.organisation_id == org)).one())
        s.commit()
    claims = _claims(app, "ana@unicef.org")
    assert (claims["entitled"], claims["via"], claims["organisation"]) == (False, None, None)


# --- GET /api/v1/organisations -----------------------------------------------------------------

def test_organisations_list_has_seats_domains_and_state(app):
    ana = make_account(app, email="ana@unicef.org")
    ben = make_account(app, email="ben@unicef.org")
    unicef = make_organisation(app, name="UNICEF", seats=[ana, ben], total=5, domains=["unicef.org"])
    who = make_organisation(app, name="WHO", total=3, billing="invoice", comped=False)
    body = _client(app, scopes=("organisations:read",))("/api/v1/organisations").json
    assert (body["page"], body["per_page"], body["total"]) == (1, 50, 2)
    first, second = body["organisations"]
    assert set(first) == {"id", "name", "slug", "status", "seats", "domains", "billing", "paid_through",
                          "created_at"}
    assert (first["id"], first["name"], first["slug"], first["status"]) == (unicef, "UNICEF", "unicef", "comped")
    assert first["seats"] == {"used": 2, "total": 5, "suspended": 0}
    assert first["domains"] == ["unicef.org"] and first["billing"] == "checkout"
    assert first["paid_through"] is None and first["created_at"].endswith("+00:00")
    assert (second["id"], second["status"], second["billing"], second["seats"]) == (
        who, "pending", "invoice", {"used": 0, "total": 3, "suspended": 0})


def test_organisations_list_pages(app):
    for i in range(5):
        make_organisation(app, name=f"Org {i}", total=1)
    get = _client(app, scopes=("organisations:read",))
    pages = [get(f"/api/v1/organisations?per_page=2&page={n}").json for n in (1, 2, 3, 4)]
    assert [[o["name"] for o in p["organisations"]] for p in pages] == [
        ["Org 0", "Org 1"], ["Org 2", "Org 3"], ["Org 4"], []]
    assert {p["total"] for p in pages} == {5}
    for bad in ("page=0", "per_page=101", "page=x"):
        resp = get(f"/api/v1/organisations?{bad}")
        assert resp.status_code == 422 and resp.json["error"]["code"] == "validation_error", bad


def test_one_organisation_lists_its_seat_holders_oldest_first_without_removed_seats(app):
    from service.membership.organisations import fit_seats, remove_seat

    ids = [make_account(app, email=f"r{i}@unicef.org") for i in range(4)]
    org = make_organisation(app, seats=ids, total=4)
    with app.app_context():
        s = get_session()
        remove_seat(s, s.scalars(select(Seat).join(Account, Account.id == Seat.account_id)
                                 .where(Account.email == "r0@unicef.org")).one())
        o = s.get(Organisation, org)
        o.seats = 2  # the quantity went below the seats used: the newest is suspended
        fit_seats(s, o)
        s.commit()
    body = _client(app, scopes=("organisations:read",))(f"/api/v1/organisations/{org}").json
    assert body["seats"] == {"used": 2, "total": 2, "suspended": 1}
    assert [(h["member_id"], h["email"], h["status"]) for h in body["seat_holders"]] == [
        (ids[1], "r1@unicef.org", "active"), (ids[2], "r2@unicef.org", "active"),
        (ids[3], "r3@unicef.org", "suspended")]
    assert all(h["taken_at"].endswith("+00:00") for h in body["seat_holders"])
    assert set(body) == {"id", "name", "slug", "status", "seats", "domains", "billing", "paid_through",
                         "created_at", "seat_holders"}


@pytest.mark.parametrize("organisation_id", ["999999", str(2**31), str(10**30)])
def test_an_unknown_organisation_is_json_404(app, organisation_id):
    make_organisation(app)
    resp = _client(app, scopes=("organisations:read",))(f"/api/v1/organisations/{organisation_id}")
    assert resp.status_code == 404 and resp.json["error"]["code"] == "not_found"
    assert resp.headers["Content-Type"] == "application/json"


@pytest.mark.parametrize("path", ["/api/v1/organisations", "/api/v1/organisations/{org}"])
def test_the_organisation_routes_need_the_organisations_read_scope(app, path):
    org = make_organisation(app)
    resp = _client(app, scopes=("entitlements:read", "members:read"))(path.format(org=org))
    assert resp.status_code == 403 and resp.json["error"]["code"] == "insufficient_scope"
    assert resp.headers["WWW-Authenticate"] == ('Bearer realm="dawns-membership", error="insufficient_scope", '
                                                'scope="organisations:read"')
    anonymous = app.test_client().get(path.format(org=org))
    assert anonymous.status_code == 401 and anonymous.json["error"]["code"] == "unauthorized"
    # The scope opens the organisations only: not the members, not the paywall's answer.
    only = _client(app, scopes=("organisations:read",), name="orgs")
    assert only(path.format(org=org)).status_code == 200
    assert only("/api/v1/members").status_code == 403
    assert only("/api/v1/entitlements?member_id=1").status_code == 403


# --- the CSV export ------------------------------------------------------------------------------

def _export(app) -> list[list[str]]:
    """What the staff's export button and the worker do, through the export service."""
    from service.membership import directory, exports

    with app.app_context():
        s = get_session()
        staff = Account(email="exporter@example.org", name="Exporter", password_hash="x", role=Role.STAFF)
        s.add(staff)
        s.commit()
        job = exports.request_export(s, staff, directory.MemberFilter(sort="oldest"))
        assert exports.run_due(s) == 1
        s.refresh(job)
        assert job.status == "done", job.error
        text = (exports.export_dir() / job.file_name).read_text()
    return list(csv.reader(io.StringIO(text)))


def test_the_export_has_via_and_organisation_columns(app):
    from datetime import datetime, timezone

    day = datetime(2026, 1, 1, tzinfo=timezone.utc)
    seated = make_account(app, email="ana@unicef.org", created_at=day)
    make_account(app, email="comped@example.org", status=S.COMPED, created_at=day + timedelta(days=1))
    make_account(app, email="pending@example.org", created_at=day + timedelta(days=2))
    outside = make_account(app, email="evil@example.org", created_at=day + timedelta(days=3))
    make_organisation(app, name="UNICEF", seats=[seated])
    make_organisation(app, name="=HYPERLINK(\"http://x\")", seats=[outside])
    rows = _export(app)
    assert rows[0][14:16] == ["via", "organisation"]
    assert [(r[1], r[3], r[4], r[14], r[15]) for r in rows[1:]] == [
        ("ana@unicef.org", "organisation", "yes", "organisation", "UNICEF"),
        ("comped@example.org", "comped", "yes", "comp", ""),
        ("pending@example.org", "pending", "no", "", ""),
        ("evil@example.org", "organisation", "yes", "organisation", "'=HYPERLINK(\"http://x\")"),
    ]


def test_the_export_gives_no_organisation_once_the_seat_window_ran_out(app):
    seated = make_account(app, email="ana@unicef.org")
    make_organisation(app, seats=[seated])
    with app.app_context():
        s = get_session()
        s.execute(update(Membership).where(Membership.account_id == seated)
                  .values(paid_through=utcnow() - timedelta(minutes=1)))
        s.commit()
    rows = _export(app)
    assert [(r[1], r[4], r[-2], r[-1]) for r in rows[1:]] == [("ana@unicef.org", "no", "", "")]
