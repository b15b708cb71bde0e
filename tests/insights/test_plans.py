"""At 100,000 members of history every insights query reads `membership_history` through an
index, never a whole-table scan (PostgreSQL's plans; the index covers what the spans read)."""
from __future__ import annotations

import json
from datetime import datetime, timedelta, timezone

import pytest
from sqlalchemy import create_engine, event, text

from service.db import get_session
from service.membership.insights import Filters, compute


@pytest.fixture
def big_history(app, database_url):
    if not database_url.startswith("postgresql"):
        pytest.skip("query plans are PostgreSQL's")
    engine = create_engine(database_url)
    with engine.begin() as conn:
        conn.execute(text(
            "INSERT INTO accounts (id, email, name, password_hash, role, created_at, updated_at) "
            "SELECT g, 'h' || g || '@example.org', 'H', 'x', 'member', now(), now() "
            "FROM generate_series(1000, 100999) g"))
        # A join for each member, and for a third of them a later change (a failed payment, an end).
        conn.execute(text(
            "INSERT INTO membership_history (account_id, at, from_status, to_status, entitled, level_name, "
            "monthly_value, currency, newsletter, source) "
            "SELECT g, now() - ((g % 540) || ' days')::interval, 'pending', 'active', true, "
            "(ARRAY['Member','Member, yearly','Give more'])[g % 3 + 1], 500, 'usd', g % 5 > 0, 'stripe event' "
            "FROM generate_series(1000, 100999) g"))
        conn.execute(text(
            "INSERT INTO membership_history (account_id, at, from_status, to_status, entitled, level_name, "
            "monthly_value, currency, newsletter, source) "
            "SELECT g, now() - ((g % 540) || ' days')::interval + interval '20 days', 'active', "
            "(ARRAY['past_due','canceled','lapsed'])[g % 3 + 1], g % 3 = 0, 'Member', 0, 'usd', false, "
            "'stripe event' FROM generate_series(1000, 100999) g WHERE g % 3 = 0"))
        conn.execute(text("SELECT setval('accounts_id_seq', 101000)"))
    with engine.connect() as conn:
        conn.execution_options(isolation_level="AUTOCOMMIT").execute(text("VACUUM ANALYZE membership_history"))
    engine.dispose()
    return app


def _nodes(node: dict):
    yield node
    for child in node.get("Plans", []):
        yield from _nodes(child)


@pytest.mark.parametrize("filters", [{}, {"level": "Member"}, {"who": "organisation"}, {"by": "week"}])
def test_every_insights_query_reads_the_history_through_an_index(big_history, filters):
    now = datetime.now(timezone.utc)
    f = Filters(start=now - timedelta(days=365 if filters.get("by") != "week" else 120), end=now, **filters)
    statements: list[tuple[str, object]] = []
    with big_history.app_context():
        session = get_session()
        engine = session.get_bind()

        def keep(conn, cursor, statement, parameters, context, executemany):
            if "membership_history" in statement and not statement.lstrip().upper().startswith("EXPLAIN"):
                statements.append((statement, parameters))

        event.listen(engine, "before_cursor_execute", keep)
        try:
            data = compute(session, f)
        finally:
            event.remove(engine, "before_cursor_execute", keep)
        assert data.entitled[-1] > 0 or filters.get("who") == "organisation"
        assert len(statements) >= 5
        for statement, parameters in statements:
            plan = session.connection().exec_driver_sql(f"EXPLAIN (FORMAT JSON) {statement}", parameters).scalar()
            nodes = list(_nodes((plan if isinstance(plan, list) else json.loads(plan))[0]["Plan"]))
            whole = [n for n in nodes if n["Node Type"] == "Seq Scan" and n.get("Relation Name") == "membership_history"]
            indexed = [n for n in nodes if "Index" in n["Node Type"] and n.get("Relation Name") == "membership_history"]
            assert indexed and not whole, (statement, json.dumps(plan)[:2000])
