"""Alembic: upgrade on an empty database, and no drift between models and migrations."""
from __future__ import annotations

from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from sqlalchemy import create_engine, inspect

from service.db import Base
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
            ctx = MigrationContext.configure(conn, opts={"compare_type": True})
            diff = compare_metadata(ctx, Base.metadata)
    finally:
        engine.dispose()
    assert diff == []
