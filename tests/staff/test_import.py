"""Member import from CSV: `flask members import FILE [--dry-run]` and /staff/admin/import.

Ghost's members export, a Mailchimp audience export and this console's own export are read; a
dry run reports every bad row with its line and writes nothing; a real run is idempotent; Stripe
customers are linked and their subscriptions pulled (history source `import`); export then
import into an empty database gives every member back."""
from __future__ import annotations

import csv
import io
import shutil
import time
from datetime import datetime, timedelta, timezone

from sqlalchemy import func, select

from service.db import get_session
from service.domain.membership import MembershipStatus as S, Role
from service.models import (
    Account,
    AuditLog,
    MailOutbox,
    Membership,
    MembershipHistory,
    NewsletterOutbox,
    StripeCustomer,
    StripeSubscription,
)

from ..support.factories import PASSWORD, make_account
from ..support.staff import client_as
from ..support.stripe_objects import subscription
from ..support.stripe_standin import Reply, SubscriptionTruth
from ..support.web import csrf_from

GHOST_HEADER = ("id,email,name,note,subscribed_to_emails,complimentary_plan,stripe_customer_id,created_at,"
                "deleted_at,labels,tiers,email_open_rate\n")

GHOST = GHOST_HEADER + (
    "5f1a,Ana.Silva@Example.org,Ana Silva,Met at the Lagos fair,true,false,,2023-01-15T10:20:30.000Z,,"
    "\"VIP, Donor\",Free,40\n"
    "5f1b,bo@example.org,Bo Chen,,false,true,,2023-02-01T08:00:00.000Z,,,Free,\n"
    "5f1c,cleo@example.org,Cléo Durand,\"Two\nline note\",true,false,,2023-03-01T08:00:00.000Z,,Press,Free,\n"
    "5f1d,gone@example.org,Gone Reader,,true,false,,2022-01-01T00:00:00.000Z,2023-05-01T00:00:00.000Z,,,\n"
)

TABLES = (Account, Membership, AuditLog, MembershipHistory, StripeCustomer, StripeSubscription, MailOutbox,
          NewsletterOutbox)


def _counts(app) -> dict[str, int]:
    with app.app_context():
        s = get_session()
        return {m.__tablename__: s.scalar(select(func.count()).select_from(m)) for m in TABLES}


def _import(runner, tmp_path, text: str, *args: str, name: str = "members.csv"):
    path = tmp_path / name
    path.write_text(text, encoding="utf-8")
    return runner.invoke(args=["members", "import", str(path), *args])


def _member(app, email: str):
    with app.app_context():
        s = get_session()
        account = s.scalars(select(Account).where(Account.email == email)).one()
        m = account.membership
        return {"id": account.id, "name": account.name, "role": account.role, "created_at": account.created_at,
                "language": account.language, "password_hash": account.password_hash, "status": m.status,
                "opt_in": m.newsletter_opt_in, "comped_at": m.comped_at, "comped_until": m.comped_until,
                "comp_reason": m.comp_reason, "level": m.level_name, "customer": m.stripe_customer_id,
                "paid_through": m.paid_through}


def test_a_dry_run_reports_every_bad_row_with_its_line_and_writes_nothing(app, runner, tmp_path):
    make_account(app, email="editor@example.org", role=Role.STAFF)
    text = GHOST_HEADER + (
        "1,good@example.org,Good Reader,,true,false,,2023-01-01T00:00:00Z,,,,\n"            # line 2
        "2,not-an-email,Bad Email,,true,false,,,,,,\n"                                         # line 3
        "3,GOOD@example.org,Twice,,true,false,,,,,,\n"                                         # line 4
        "4,date@example.org,Bad Date,,true,false,,15/01/2023,,,,\n"                            # line 5
        "5,bool@example.org,Bad Bool,,maybe,false,,,,,,\n"                                    # line 6
        "6,cus@example.org,Bad Customer,,true,false,cust_123,,,,,\n"                           # line 7
        "7,editor@example.org,A Staff Member,,true,false,,,,,,\n"                              # line 8
        "8,newline@example.org,\"Evil\nName\",,true,false,,,,,,\n"                            # lines 9-10
        "9,fine@example.org,Fine Reader,,false,false,,,,,,\n"                                  # line 11
    )
    before = _counts(app)
    result = _import(runner, tmp_path, text, "--dry-run")
    assert result.exit_code == 1, result.output
    out = result.output
    assert "format: ghost; 9 row(s)" in out
    assert "line 3: error: Invalid email 'not-an-email'." in out
    assert "line 4: error: Duplicate email good@example.org: already on line 2." in out
    assert "line 5: error: Bad date in created_at: '15/01/2023'" in out
    assert "line 6: error: Bad boolean in subscribed_to_emails: 'maybe'" in out
    assert "line 7: error: Bad stripe_customer_id 'cust_123'" in out
    assert "line 8: error: editor@example.org is a staff account" in out
    assert "line 9: error: The name has control characters or line breaks" in out
    assert sum(1 for line in out.splitlines() if ": error: " in line) == 7
    assert "dry run, nothing written: 9 row(s) read, 2 would be created, 0 match an existing member" in out
    assert _counts(app) == before  # not even an audit row


def test_an_unknown_format_and_a_bad_encoding_are_refused_at_line_one(app, runner, tmp_path):
    result = _import(runner, tmp_path, "name,phone\nAna,123\n", "--dry-run")
    assert result.exit_code == 1 and "line 1: error: Unknown format: no email column" in result.output
    path = tmp_path / "latin1.csv"
    path.write_bytes("email,name\nzoe@example.org,Zo\xe9\n".encode("latin-1"))
    result = runner.invoke(args=["members", "import", str(path), "--dry-run"])
    assert "line 1: error: The file is not UTF-8 text" in result.output


def test_a_ghost_export_is_imported_and_a_second_run_changes_nothing(app, runner, tmp_path):
    first = _import(runner, tmp_path, GHOST)
    assert first.exit_code == 0, first.output
    assert "line 6: note: Deleted in Ghost" in first.output  # Cléo's quoted two-line note is lines 4-5
    assert "created 3, updated 0, unchanged 0, skipped 1 (0 error(s))" in first.output

    ana = _member(app, "ana.silva@example.org")  # matched and stored normalised
    assert (ana["name"], ana["status"], ana["opt_in"], ana["role"]) == ("Ana Silva", S.PENDING, True, Role.MEMBER)
    assert ana["created_at"] == datetime(2023, 1, 15, 10, 20, 30, tzinfo=timezone.utc)
    assert ana["password_hash"].startswith("pbkdf2:")  # a random password nobody knows
    bo = _member(app, "bo@example.org")
    assert (bo["status"], bo["opt_in"], bo["comp_reason"], bo["comped_until"]) == (
        S.COMPED, False, "Imported: complimentary plan", None)
    assert _member(app, "cleo@example.org")["name"] == "Cléo Durand"
    with app.app_context():
        s = get_session()
        assert s.scalar(select(func.count()).select_from(Account).where(Account.email == "gone@example.org")) == 0
        audit = {a.target_account_id: a for a in s.scalars(select(AuditLog).where(AuditLog.action == "member_imported"))}
        assert audit[ana["id"]].details == {"source": "ghost", "note": "Met at the Lagos fair",
                                            "labels": ["VIP", "Donor"]}
        assert audit[ana["id"]].actor_email == "cli"
        history = s.execute(select(MembershipHistory.account_id, MembershipHistory.to_status,
                                   MembershipHistory.source)).all()
        assert (bo["id"], "comped", "import") in history
        assert {h.source for h in history} == {"import"}
        assert s.scalar(select(func.count()).select_from(MailOutbox)) == 0  # nobody is mailed
    # The note and labels are on the member's staff timeline.
    page = client_as(app, "staff").get(f"/staff/members/{ana['id']}").get_data(as_text=True)
    assert "member imported" in page and "Met at the Lagos fair" in page and "VIP, Donor" in page

    before = _counts(app)
    second = _import(runner, tmp_path, GHOST)
    assert second.exit_code == 0, second.output
    assert "created 0, updated 0, unchanged 3, skipped 1" in second.output
    assert _counts(app) == before  # no new audit row, no new history row, nothing at all

    # A changed file updates only what changed, never re-subscribes an opt-out, and never renames
    # a reader (the name they or staff gave is theirs).
    changed = GHOST.replace("Ana Silva,Met at the Lagos fair,true", "Ana Silva-Okafor,Met at the Lagos fair,false")
    third = _import(runner, tmp_path, changed.replace("bo@example.org,Bo Chen,,false", "bo@example.org,Bo Chen,,true"))
    assert "created 0, updated 1, unchanged 2" in third.output, third.output
    assert "line 3: note: bo@example.org opted out of DAWNS Digest here: kept opted out." in third.output
    ana = _member(app, "ana.silva@example.org")
    assert (ana["name"], ana["opt_in"]) == ("Ana Silva", False)
    assert _member(app, "bo@example.org")["opt_in"] is False


MAILCHIMP_HEADER = ("Email Address,First Name,Last Name,Address,Phone Number,MEMBER_RATING,OPTIN_TIME,OPTIN_IP,"
                    "CONFIRM_TIME,CONFIRM_IP,LATITUDE,LONGITUDE,GMTOFF,DSTOFF,TIMEZONE,CC,REGION,LAST_CHANGED,"
                    "LEID,EUID,NOTES,TAGS")


def test_mailchimp_subscribed_and_unsubscribed_exports_are_accepted(app, runner, tmp_path):
    subscribed = MAILCHIMP_HEADER + "\n" + (
        "dana@example.org,Dana,Lee,,,2,\"2022-11-03 09:12:44\",,\"2022-11-03 09:13:01\",,,,,,,,,"
        "\"2023-01-01 00:00:00\",123,abc,Likes maps,\"\"\"Field desk\"\",\"\"Donor\"\"\"\n"
        "eli@example.org,Eli,,,,4,\"2023-01-03 09:12:44\",,,,,,,,,,,,124,abd,,\n")
    unsubscribed = MAILCHIMP_HEADER + ",UNSUB_TIME,UNSUB_CAMPAIGN_TITLE,UNSUB_CAMPAIGN_ID,UNSUB_REASON\n" + (
        "fay@example.org,Fay,Ode,,,1,\"2021-05-01 10:00:00\",,,,,,,,,,,,125,abe,,,\"2023-06-01 10:00:00\",June,"
        "c1,No longer interested\n")
    result = _import(runner, tmp_path, subscribed, name="subscribed_members_export.csv")
    assert result.exit_code == 0, result.output
    assert "format: mailchimp; 2 row(s)" in result.output and "created 2" in result.output
    result = _import(runner, tmp_path, unsubscribed, name="unsubscribed_members_export.csv")
    assert result.exit_code == 0, result.output
    dana, eli, fay = (_member(app, e) for e in ("dana@example.org", "eli@example.org", "fay@example.org"))
    assert (dana["name"], dana["opt_in"], dana["created_at"]) == (
        "Dana Lee", True, datetime(2022, 11, 3, 9, 12, 44, tzinfo=timezone.utc))
    assert (eli["name"], eli["opt_in"]) == ("Eli", True)
    assert (fay["name"], fay["opt_in"]) == ("Fay Ode", False)
    with app.app_context():
        details = get_session().scalars(select(AuditLog.details).where(
            AuditLog.target_account_id == dana["id"])).one()
        assert details == {"source": "mailchimp", "note": "Likes maps", "labels": ["Field desk", "Donor"]}
    again = _import(runner, tmp_path, subscribed, name="subscribed_members_export.csv")
    assert "created 0, updated 0, unchanged 2" in again.output


def _serve_customer(stripe_api, customer_id: str, email: str, subs: list[dict], truth: SubscriptionTruth) -> None:
    stripe_api.on("GET", f"/v1/customers/{customer_id}", Reply(200, {"id": customer_id, "object": "customer",
                                                                      "email": email}))
    for sub in subs:
        truth.set(sub)


def _serve_lists(stripe_api, customers: dict[str, str], subs: list[dict]) -> None:
    """GET /v1/customers?email= and GET /v1/subscriptions?customer= as Stripe answers them."""
    def customer_list(rec):
        data = [{"id": cid, "object": "customer", "email": email} for cid, email in customers.items()
                if email == rec.query.get("email")]
        return Reply(200, {"object": "list", "url": "/v1/customers", "data": data, "has_more": False})

    def subscription_list(rec):
        data = [s for s in subs if s["customer"] == rec.query.get("customer")]
        return Reply(200, {"object": "list", "url": "/v1/subscriptions", "data": data, "has_more": False})

    stripe_api.on("GET", "/v1/customers", customer_list)
    stripe_api.on("GET", "/v1/subscriptions", subscription_list)


def test_stripe_customers_are_linked_and_reconciled_by_id_and_by_email(app, runner, tmp_path, stripe_api):
    now = int(time.time())
    period = {"period_start": now - 86400, "period_end": now + 29 * 86400}
    subs = [subscription(id="sub_imp_a", customer="cus_impA", status="active", **period),
            subscription(id="sub_imp_b", customer="cus_impB", status="past_due", **period)]
    truth = SubscriptionTruth(stripe_api)
    _serve_customer(stripe_api, "cus_impA", "ana@example.org", subs[:1], truth)
    _serve_customer(stripe_api, "cus_impB", "Bea@Example.org", subs[1:], truth)
    _serve_lists(stripe_api, {"cus_impA": "ana@example.org", "cus_impB": "Bea@Example.org",
                              "cus_other": "owned@example.org"}, subs)
    stripe_api.on("GET", "/v1/customers/cus_other", Reply(200, {"id": "cus_other", "email": "owned@example.org"}))
    make_account(app, email="owner@example.org", customer="cus_other")  # another reader's customer
    text = GHOST_HEADER + (
        "1,ana@example.org,Ana,,true,false,cus_impA,,,,,\n"
        "2,Bea@Example.org,Bea,,true,false,auto,,,,,\n"
        "3,nobody@example.org,Nobody,,true,false,auto,,,,,\n"
        "4,thief@example.org,Thief,,true,false,cus_other,,,,,\n")
    dry = _import(runner, tmp_path, text, "--dry-run")
    assert "line 5: error: Stripe customer cus_other belongs to another account" in dry.output
    assert not stripe_api.calls("GET", "/v1/subscriptions")  # a dry run asks Stripe nothing

    result = _import(runner, tmp_path, text)
    assert "line 5: error: Stripe customer cus_other belongs to another account" in result.output
    assert "line 4: note: No Stripe customer has the email nobody@example.org: none linked." in result.output
    assert "created 3, updated 0, unchanged 0, skipped 1 (1 error(s)), Stripe customers linked 2" in result.output
    ana, bea = _member(app, "ana@example.org"), _member(app, "bea@example.org")
    assert (ana["status"], ana["customer"], ana["level"]) == (S.ACTIVE, "cus_impA", "Member")
    assert (bea["status"], bea["customer"]) == (S.PAST_DUE, "cus_impB")
    assert _member(app, "nobody@example.org")["customer"] is None
    assert [c.query for c in stripe_api.calls("GET", "/v1/customers")][0]["email"] == "Bea@Example.org"
    assert {c.query.get("customer") for c in stripe_api.calls("GET", "/v1/subscriptions")} == {"cus_impA", "cus_impB"}
    with app.app_context():
        s = get_session()
        rows = s.execute(select(MembershipHistory.account_id, MembershipHistory.to_status, MembershipHistory.source)
                         .order_by(MembershipHistory.id)).all()
        assert (ana["id"], "active", "import") in rows and (bea["id"], "past_due", "import") in rows
        owner = s.scalar(select(StripeCustomer.account_id).where(StripeCustomer.stripe_id == "cus_other"))
        assert owner == s.scalar(select(Account.id).where(Account.email == "owner@example.org"))
        assert s.scalar(select(func.count()).select_from(MailOutbox)) == 0  # no welcome for the active ones

    before = _counts(app)
    again = _import(runner, tmp_path, text)
    assert "created 0, updated 0, unchanged 3" in again.output, again.output
    assert _counts(app) == before


def test_a_customer_is_never_linked_to_a_staff_account(app, runner, tmp_path, stripe_api):
    make_account(app, email="boss@example.org", role=Role.ADMIN)
    result = _import(runner, tmp_path, GHOST_HEADER + "1,boss@example.org,Boss,,true,false,cus_boss,,,,,\n")
    assert result.exit_code == 1 and "line 2: error: boss@example.org is a staff account" in result.output
    assert not stripe_api.calls("GET", "/v1/customers/cus_boss")
    with app.app_context():
        assert get_session().scalar(select(func.count()).select_from(StripeCustomer)) == 0


def _export_rows(app) -> list[list[str]]:
    """The staff export as the worker writes it (COPY on PostgreSQL), read back."""
    from service.membership import exports
    from service.models import ExportJob

    staff = make_account(app, email=f"exporter{time.monotonic_ns()}@example.org", role=Role.STAFF)
    with app.app_context():
        s = get_session()
        job = ExportJob(requested_by=staff, filters={"sort": "oldest"}, status="pending")
        s.add(job)
        s.commit()
        exports.run_due(s)
        s.refresh(job)
        assert job.status == "done", job.error
        return list(csv.reader(io.StringIO((exports.export_dir() / job.file_name).read_text())))


def test_export_then_import_into_an_empty_database_gives_every_member_back(app, make_app, stripe_api, runner,
                                                                            sqlite_template, tmp_path):
    from service.billing.lifecycle import sync_subscription
    from service.billing.runtime import get_gateway
    from service.membership import history
    from service.membership.service import recompute

    now = int(time.time())
    period = {"period_start": now - 86400, "period_end": now + 29 * 86400}
    day = datetime(2025, 3, 1, tzinfo=timezone.utc)
    monthly = subscription(id="sub_rt_a", customer="cus_rtA", status="active", **period)
    give_more = subscription(id="sub_rt_b", customer="cus_rtB", status="active", cancel_at_period_end=True, **period)
    give_more["items"]["data"][0]["price"].update(id="price_rt_custom", unit_amount=1500)  # "give more", $15
    late = subscription(id="sub_rt_c", customer="cus_rtC", status="past_due", **period)
    subs = [monthly, give_more, late]
    truth = SubscriptionTruth(stripe_api)
    emails = {"cus_rtA": "ana@example.org", "cus_rtB": "bo@example.org", "cus_rtC": "cy@example.org"}
    for sub in subs:
        _serve_customer(stripe_api, sub["customer"], emails[sub["customer"]], [sub], truth)
    _serve_lists(stripe_api, emails, subs)

    a = make_account(app, email="ana@example.org", name="Ana Ávila", created_at=day, customer="cus_rtA")
    b = make_account(app, email="bo@example.org", name="=Bo (formula-like)", created_at=day + timedelta(days=1),
                     customer="cus_rtB", newsletter=False)
    c = make_account(app, email="cy@example.org", name="Cy", created_at=day + timedelta(days=2), customer="cus_rtC")
    d = make_account(app, email="dee@example.org", name="Dee", created_at=day + timedelta(days=3), newsletter=False)
    e = make_account(app, email="eve@example.org", name="Eve", created_at=day + timedelta(days=4))
    make_account(app, email="fin@example.org", name="Fin", created_at=day + timedelta(days=5))
    comp_end = datetime.now(timezone.utc).replace(microsecond=0) + timedelta(days=40)
    with app.app_context():
        s = get_session()
        gateway = get_gateway()
        for sub in subs:
            sync_subscription(s, gateway, sub["id"], sub["customer"])
        for member, until, reason in ((d, comp_end, "Press pass"), (e, None, "Board member")):
            m = s.get(Membership, s.get(Account, member).membership.id)
            m.comped_at, m.comped_until, m.comp_reason = datetime.now(timezone.utc), until, reason
            with history.source(s, history.STAFF):
                recompute(s, s.get(Account, member))
        s.get(Account, c).language = "fr"
        s.get(Account, e).language = "ar"
        s.commit()
    assert _member(app, "bo@example.org")["level"] == "Give more"
    exported = _export_rows(app)
    header = exported[0]
    original = {r[1]: r for r in exported[1:]}
    assert set(original) == {"ana@example.org", "bo@example.org", "cy@example.org", "dee@example.org",
                             "eve@example.org", "fin@example.org"}
    assert original["dee@example.org"][header.index("comped_until")].startswith(comp_end.date().isoformat())
    assert original["bo@example.org"][header.index("newsletter_opt_in")] == "no"
    before = {email: _member(app, email) for email in original}

    # A new, empty database (same Stripe account): import the file there.
    empty = tmp_path / "empty.db"
    shutil.copy(sqlite_template, empty)
    fresh = make_app(DATABASE_URL=f"sqlite:///{empty}")
    path = tmp_path / "export.csv"
    with open(path, "w", newline="") as out:
        csv.writer(out).writerows(exported)
    result = fresh.test_cli_runner().invoke(args=["members", "import", str(path)])
    assert result.exit_code == 0, result.output
    assert "format: dawns export; 6 row(s)" in result.output
    assert "created 6, updated 0, unchanged 0, skipped 0 (0 error(s)), Stripe customers linked 3" in result.output
    assert "note" not in result.output.replace("notes", "")  # every level came back as the file says

    for email, was in before.items():
        now_ = _member(fresh, email)
        for key in ("id", "password_hash"):
            was.pop(key), now_.pop(key)
        assert now_ == was, email
    # Exported again from there: the same file (but the ids; times compared as times, as the two
    # databases write them with or without "+00:00").
    again = {r[1]: r for r in _export_rows(fresh)[1:]}
    times = {header.index(c) for c in ("paid_through", "created_at", "comped_at", "comped_until")}

    def cells(row):
        return [_as_time(v) if i in times else v for i, v in enumerate(row) if i != header.index("id")]

    for email, row in original.items():
        assert cells(again[email]) == cells(row), email
    with fresh.app_context():
        s = get_session()
        assert set(s.scalars(select(MembershipHistory.source))) == {"import"}
        assert s.scalar(select(func.count()).select_from(MailOutbox)) == 0
    # And a second import there changes nothing.
    second = fresh.test_cli_runner().invoke(args=["members", "import", str(path)])
    assert "created 0, updated 0, unchanged 6" in second.output, second.output


def _as_time(value: str) -> datetime | None:
    if not value:
        return None
    when = datetime.fromisoformat(value)
    return when if when.tzinfo else when.replace(tzinfo=timezone.utc)


# --- the staff page ------------------------------------------------------------------------------

def test_the_import_page_is_for_admins_only(app):
    assert client_as(app, "anonymous").get("/staff/admin/import").status_code == 302
    assert client_as(app, "member").get("/staff/admin/import").status_code == 403
    staff = client_as(app, "staff")
    assert staff.get("/staff/admin/import").status_code == 403
    assert staff.post("/staff/admin/import", data={}).status_code in (400, 403)
    admin = client_as(app, "admin")
    assert 'href="/staff/admin/import"' in admin.get("/staff/admin").get_data(as_text=True)


def _upload(client, text: str, mode: str, confirm: bool = True, token: str | None = None):
    page = client.get("/staff/admin/import").get_data(as_text=True)
    data = {"csrf_token": token if token is not None else csrf_from(page), "imp-mode": mode,
            "imp-file": (io.BytesIO(text.encode()), "ghost-members.csv")}
    if confirm:
        data["imp-confirm"] = "y"
    return client.post("/staff/admin/import", data=data, content_type="multipart/form-data")


def test_an_admin_dry_runs_then_imports_a_file_from_the_console(app):
    admin = client_as(app, "admin")
    bad = GHOST_HEADER + "1,ok@example.org,Ok,,true,false,,,,,,\n2,broken,Bad,,true,false,,,,,,\n"
    resp = _upload(admin, bad, "dry_run")
    page = resp.get_data(as_text=True)
    assert resp.status_code == 200
    assert "Dry run of ghost-members.csv" in page and "<td>3</td><td>Invalid email &#39;broken&#39;.</td>" in page
    assert "1 would be created" in page
    with app.app_context():
        assert get_session().scalar(select(func.count()).select_from(Account).where(
            Account.email == "ok@example.org")) == 0

    assert _upload(admin, bad, "import", token="forged").status_code == 400  # CSRF
    refused = _upload(admin, bad, "import", confirm=False)
    assert refused.status_code == 400 and "Tick to confirm." in refused.get_data(as_text=True)

    done = _upload(admin, GHOST, "import").get_data(as_text=True)
    assert "Imported ghost-members.csv" in done and "created 3, updated 0, unchanged 0, skipped 1" in done
    with app.app_context():
        s = get_session()
        admin_id = s.scalar(select(Account.id).where(Account.email == "admin-user@example.org"))
        rows = s.scalars(select(AuditLog).where(AuditLog.action.in_(["member_imported", "members_import"]))).all()
        assert {r.actor_id for r in rows} == {admin_id}
        assert [r.details["created"] for r in rows if r.action == "members_import"] == [3]


def test_an_account_that_never_proved_its_address_does_not_keep_what_the_file_brings(app, runner, tmp_path,
                                                                                     stripe_api):
    """Anyone can join with anyone's address: the import's Stripe customer and comp go to the
    address's owner, not to whoever set that account's password (it is replaced; its sessions end)."""
    from ..support.web import login

    now = int(time.time())
    sub = subscription(id="sub_vic", customer="cus_vic", status="active", period_start=now - 86400,
                       period_end=now + 29 * 86400)
    truth = SubscriptionTruth(stripe_api)
    _serve_customer(stripe_api, "cus_vic", "victim@example.org", [sub], truth)
    _serve_lists(stripe_api, {"cus_vic": "victim@example.org"}, [sub])
    squatter = make_account(app, email="victim@example.org", name="Squatter")  # joined first, never proved it
    client = app.test_client()
    login(client, "victim@example.org", PASSWORD)
    assert client.get("/account").status_code == 200
    result = _import(runner, tmp_path, GHOST_HEADER + "1,victim@example.org,Real Victim,,true,false,cus_vic,,,,,\n")
    assert "its password was replaced and its sessions ended" in result.output, result.output
    assert client.get("/account").status_code == 302  # the squatter's session is over
    assert login(client, "victim@example.org", PASSWORD).status_code == 422  # and its password
    member = _member(app, "victim@example.org")
    assert member["id"] == squatter and member["customer"] == "cus_vic" and member["name"] == "Squatter"


def test_a_member_with_another_stripe_customer_is_not_given_a_second(app, runner, tmp_path, stripe_api):
    make_account(app, email="twice@example.org", customer="cus_first", verified=True)
    stripe_api.on("GET", "/v1/customers/cus_second", Reply(200, {"id": "cus_second", "email": "twice@example.org"}))
    stripe_api.on("GET", "/v1/subscriptions", Reply(200, {"object": "list", "data": [], "has_more": False}))
    result = _import(runner, tmp_path, GHOST_HEADER + "1,twice@example.org,Twice,,true,false,cus_second,,,,,\n")
    assert "already has Stripe customer cus_first: cus_second not linked" in result.output, result.output
    assert _member(app, "twice@example.org")["customer"] == "cus_first"


def test_an_old_file_never_shortens_or_replaces_a_comp(app, runner, tmp_path):
    from service.staff import services as staff

    reader = make_account(app, email="founder@example.org", verified=True)
    admin = make_account(app, email="admin@example.org", role=Role.ADMIN)
    with app.app_context():
        staff.comp(get_session().get(Account, admin), reader, "Lifetime: founder", None)
    old = _export_header() + _export_row("founder@example.org", "Someone Else", comped_at="2024-01-01T00:00:00+00:00",
                                         comped_until="2024-02-01T00:00:00+00:00", reason="x")
    result = _import(runner, tmp_path, old)
    assert "updated 0" in result.output, result.output
    with app.app_context():
        m = get_session().get(Account, reader).membership
        assert (m.status, m.comped_until, m.comp_reason) == (S.COMPED, None, "Lifetime: founder")
        assert get_session().get(Account, reader).name == "Reader One"


def _export_header() -> str:
    from service.membership.exports import COLUMNS

    return ",".join(COLUMNS) + "\n"


def _export_row(email: str, name: str, *, comped_at: str = "", comped_until: str = "", reason: str = "") -> str:
    from service.membership.exports import COLUMNS

    cells = {c: "" for c in COLUMNS}
    cells.update(id="1", email=email, name=name, status="comped", entitled="yes", newsletter_opt_in="yes",
                 comped_at=comped_at, comped_until=comped_until,
                 comp_reason=reason)
    return ",".join(cells[c] for c in COLUMNS) + "\n"
