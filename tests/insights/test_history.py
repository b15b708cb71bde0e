"""The membership history (SPEC "Insight and operations"): one append-only row per change of a
member's state, level, value or DAWNS enrolment, written in the transaction of the change, with
its source: `stripe event` (and the event's id), `staff`, `seat`; nothing for a duplicate
event or a renewal that changes nothing; and the migration's backfill of existing members."""
from __future__ import annotations

import time
from datetime import datetime, timezone

from sqlalchemy import create_engine, select, text

from service.db import get_session
from service.domain.membership import Role
from service.models import Account, MembershipHistory

from ..support.events import event, post_event
from ..support.factories import make_account
from ..support.organisations import active_org, give_seat, org_level
from ..support.stripe_objects import subscription


def rows(app, account_id):
    with app.app_context():
        found = get_session().scalars(select(MembershipHistory).where(MembershipHistory.account_id == account_id)
                                      .order_by(MembershipHistory.at, MembershipHistory.id)).all()
        get_session().expunge_all()
        return [(r.from_status, r.to_status, r.entitled, r.level_name, r.monthly_value, r.source, r.stripe_event_id,
                 r.newsletter) for r in found]


def test_a_stripe_event_writes_one_row_with_its_id_and_nothing_for_repeats(app, client):
    member = make_account(app, customer="cus_H")
    now = int(time.time())
    created = event("customer.subscription.created",
                    subscription(id="sub_H", customer="cus_H", status="active", member_id=member), created=now - 30)
    post_event(client, created)
    post_event(client, created)  # a duplicate delivery
    post_event(client, event("customer.subscription.updated",  # a renewal: nothing watched moves
                             subscription(id="sub_H", customer="cus_H", status="active", member_id=member,
                                          period_start=now, period_end=now + 30 * 86400), created=now - 20))
    assert rows(app, member) == [("pending", "active", True, "Member", 500, "stripe event", created["id"], True)]
    failed = event("customer.subscription.updated",
                   subscription(id="sub_H", customer="cus_H", status="past_due", member_id=member), created=now - 10)
    post_event(client, failed)
    assert rows(app, member)[-1] == ("active", "past_due", True, "Member", 500, "stripe event", failed["id"], True)


def test_staff_and_seat_changes_are_recorded_as_theirs(app, client):
    from service.staff import services as staff

    reader = make_account(app)
    admin = make_account(app, email="admin@example.org", role=Role.ADMIN)
    with app.app_context():
        staff.comp(get_session().get(Account, admin), reader, "press", None)
    assert rows(app, reader) == [("pending", "comped", True, None, 0, "staff", None, True)]

    org_level(app)
    boss = make_account(app, email="boss@relief.example")
    org_id, _ = active_org(app, client, admin_id=boss, seats=3)
    colleague = make_account(app, email="colleague@relief.example")
    give_seat(app, org_id, colleague)
    assert [r[1:2] + r[5:6] for r in rows(app, colleague)] == [("organisation", "seat")]


def test_a_rolled_back_change_leaves_no_history(app):
    from service.membership.service import recompute

    reader = make_account(app)
    with app.app_context():
        s = get_session()
        account = s.get(Account, reader)
        account.membership.comped_at = datetime.now(timezone.utc)
        account.membership.comp_reason = "x"
        recompute(s, account)
        assert s.scalar(select(MembershipHistory.id).where(MembershipHistory.account_id == reader)) is not None
        s.rollback()
    assert rows(app, reader) == []


def test_the_migration_backfills_members_from_their_events_and_the_audit_log(tmp_path, database_url):
    """0009 -> 0010 on a database with members: a row per state their applied subscription events
    show, a staff comp, and a last row to the state they hold now."""
    from service.migrate import upgrade

    if not database_url.startswith("sqlite"):
        import pytest

        pytest.skip("run on a fresh SQLite file: the shared PostgreSQL schema is at head for the other tests")
    url = f"sqlite:///{tmp_path / 'old.db'}"
    upgrade(url, "0009")
    engine = create_engine(url)
    t = [datetime(2026, m, 1, tzinfo=timezone.utc) for m in range(1, 7)]
    with engine.begin() as conn:
        for i, status in ((1, "past_due"), (2, "comped"), (3, "active")):
            conn.execute(text("INSERT INTO accounts (id, email, name, password_hash, role, created_at, updated_at) "
                              "VALUES (:i, :e, 'Old', 'x', 'member', :t, :t)"), {"i": i, "e": f"m{i}@example.org",
                                                                                  "t": t[0]})
            conn.execute(text("INSERT INTO memberships (account_id, status, cancel_at_period_end, newsletter_opt_in, "
                              "newsletter_desired, newsletter_status, status_changed_at, created_at, updated_at, "
                              "level_name, level_currency, monthly_value, paying_twice, has_seat) "
                              "VALUES (:i, :s, 0, 1, 'subscribed', 'subscribed', :c, :t, :t, 'Member', 'usd', 500, 0, 0)"),
                         {"i": i, "s": status, "c": t[4], "t": t[0]})
        events = ((1, t[1], "customer.subscription.created", "active"), (1, t[2], "customer.subscription.updated",
                  "past_due"), (1, t[3], "customer.subscription.updated", "past_due"),
                  (2, t[1], "customer.subscription.created", "active"))
        for n, (i, at, kind, status) in enumerate(events):
            conn.execute(text("INSERT INTO stripe_events (stripe_id, type, stripe_created_at, livemode, account_id, "
                              "payload, outcome, received_at, status, attempts) VALUES (:id, :k, :at, 0, :i, :p, "
                              "'applied', :at, 'done', 1)"),
                         {"id": f"evt_{n}", "k": kind, "at": at, "i": i,
                          "p": '{"data": {"object": {"status": "%s"}}}' % status})
        conn.execute(text("INSERT INTO audit_log (actor_email, action, target_account_id, details, created_at) "
                          "VALUES ('staff@example.org', 'comp', 2, '{}', :at)"), {"at": t[2]})
    upgrade(url)
    with engine.connect() as conn:
        got = conn.execute(text("SELECT account_id, from_status, to_status, entitled, monthly_value, source, "
                                "stripe_event_id FROM membership_history ORDER BY account_id, at, id")).all()
    engine.dispose()
    assert [tuple(r) for r in got] == [
        (1, "pending", "active", 1, 500, "stripe event", "evt_0"),
        (1, "active", "past_due", 1, 500, "stripe event", "evt_1"),
        (2, "pending", "active", 1, 500, "stripe event", "evt_3"),
        (2, "active", "comped", 1, 0, "staff", None),
        (3, "pending", "active", 1, 500, "system", None),  # no facts: its state now, from when it changed
    ]
