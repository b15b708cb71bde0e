"""Alembic: upgrade on an empty database, and no drift between models and migrations."""
from __future__ import annotations

from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from sqlalchemy import create_engine, inspect

from service.db import Base, include_in_drift_check
from service.migrate import head_revision


def test_upgrade_head_on_empty_database_creates_every_table(database_url):
    # `database_url` was migrated from empty by the fixtures (SQLite template, PostgreSQL schema).
    engine = create_engine(database_url)
    try:
        tables = set(inspect(engine).get_table_names())
        with engine.connect() as conn:
            current = MigrationContext.configure(conn).get_current_revision()
    finally:
        engine.dispose()
    assert current == head_revision()
    assert set(Base.metadata.tables) <= tables
    for needed in ("accounts", "memberships", "stripe_customers", "stripe_subscriptions",
                   "stripe_events", "newsletter_outbox", "api_tokens", "audit_log"):
        assert needed in tables


def test_models_and_migrations_do_not_drift(database_url):
    engine = create_engine(database_url)
    try:
        with engine.connect() as conn:
            ctx = MigrationContext.configure(conn, opts={"compare_type": True,
                                                         "include_object": include_in_drift_check})
            diff = compare_metadata(ctx, Base.metadata)
    finally:
        engine.dispose()
    assert diff == []


def test_upgrading_from_the_schema_before_levels_keeps_every_member_as_they_are(make_app, tmp_path, database_url):
    """0004 -> head on a database with members: states, dates and subscriptions survive, and the
    first recompute afterwards (a renewal) keeps the paying member active."""
    from datetime import datetime, timezone

    from sqlalchemy import text

    from service.migrate import upgrade

    if not database_url.startswith("sqlite"):
        import pytest

        pytest.skip("run on a fresh SQLite file: the shared PostgreSQL schema is at head for the other tests")
    url = f"sqlite:///{tmp_path / 'old.db'}"
    upgrade(url, "0004")
    engine = create_engine(url)
    end = datetime(2027, 1, 1, tzinfo=timezone.utc)
    with engine.begin() as conn:
        for i, (status, sub_status) in enumerate((("active", "active"), ("past_due", "past_due"),
                                                  ("canceled", "canceled"), ("pending", None)), start=1):
            conn.execute(text("INSERT INTO accounts (id, email, name, password_hash, role, created_at, updated_at) "
                              "VALUES (:i, :e, 'Old Member', 'x', 'member', :t, :t)"),
                         {"i": i, "e": f"old{i}@example.org", "t": end})
            conn.execute(text("INSERT INTO memberships (account_id, status, paid_through, cancel_at_period_end, "
                              "newsletter_opt_in, newsletter_desired, newsletter_status, status_changed_at, "
                              "created_at, updated_at) VALUES (:i, :s, :p, 0, 1, 'none', 'not_subscribed', :t, :t, :t)"),
                         {"i": i, "s": status, "p": end if sub_status else None, "t": end})
            if sub_status:
                conn.execute(text("INSERT INTO stripe_customers (stripe_id, account_id, deleted, created_at, updated_at)"
                                  " VALUES (:c, :i, 0, :t, :t)"), {"c": f"cus_old{i}", "i": i, "t": end})
                conn.execute(text("INSERT INTO stripe_subscriptions (stripe_id, customer_stripe_id, account_id, status,"
                                  " price_id, current_period_end, cancel_at_period_end, snapshot_at, created_at, "
                                  "updated_at) VALUES (:s, :c, :i, :st, 'price_test_monthly', :p, 0, :t, :t, :t)"),
                             {"s": f"sub_old{i}", "c": f"cus_old{i}", "i": i, "st": sub_status, "p": end,
                              "t": datetime(2026, 1, 1, tzinfo=timezone.utc)})
        before = conn.execute(text("SELECT account_id, status, paid_through FROM memberships ORDER BY 1")).all()
    upgrade(url)
    with engine.connect() as conn:
        after = conn.execute(text("SELECT account_id, status, paid_through FROM memberships ORDER BY 1")).all()
        items = conn.execute(text("SELECT items FROM stripe_subscriptions ORDER BY id")).scalars().all()
    engine.dispose()
    assert after == before
    assert [__import__("json").loads(i) if isinstance(i, str) else i for i in items] == [[{"price": "price_test_monthly"}]] * 3

    app = make_app(DATABASE_URL=url)
    from service.db import get_session
    from service.membership.service import recompute
    from service.models import Account

    with app.app_context():
        s = get_session()
        for i in (1, 2, 3, 4):
            recompute(s, s.get(Account, i))
        s.commit()
        statuses = [s.get(Account, i).membership.status.value for i in (1, 2, 3, 4)]
        levels = [s.get(Account, i).membership.level_name for i in (1, 2, 3, 4)]
    assert statuses == ["active", "past_due", "canceled", "pending"]
    assert levels == ["Member", "Member", "Member", None]
