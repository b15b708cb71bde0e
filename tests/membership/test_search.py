"""Staff search at scale: the right rows, keyset pages that never skip or repeat, and (on
PostgreSQL) plans that use the indexes. Plans are asserted, never times."""
from __future__ import annotations

import json
from datetime import datetime, timedelta, timezone

import pytest
from sqlalchemy import create_engine, text

from service.db import get_session
from service.domain.membership import MembershipStatus as S
from service.membership import directory

from ..support.factories import make_account

START = datetime(2026, 1, 1, tzinfo=timezone.utc)


def _search(app, **kw):
    f = directory.MemberFilter(**{k: v for k, v in kw.items() if k in ("q", "status", "sort", "entitled")})
    with app.app_context():
        return directory.search(get_session(), f, per_page=kw.get("per_page", 50), cursor=kw.get("cursor"),
                                page=kw.get("page", 1))


def test_search_matches_email_exact_and_prefix_and_name_contains(app):
    make_account(app, email="amina.yusuf@example.org", name="Amina Yusuf")
    make_account(app, email="amir.khan@example.org", name="Amir Khan")
    make_account(app, email="bea@example.org", name="Bea Ortiz-Amiri")
    make_account(app, email="under_score@example.org", name="Under Score")
    emails = lambda **kw: sorted(r["email"] for r in _search(app, **kw).rows)  # noqa: E731
    assert emails(q="amir.khan@example.org") == ["amir.khan@example.org"]
    assert emails(q="AMI") == ["amina.yusuf@example.org", "amir.khan@example.org", "bea@example.org"]
    assert emails(q="ortiz") == ["bea@example.org"]
    assert emails(q="under_") == ["under_score@example.org"]  # _ is a letter here, not a wildcard
    assert emails(q="%") == []


def test_keyset_pages_never_skip_or_repeat_a_member_while_members_join(app):
    for i in range(45):
        make_account(app, email=f"m{i:02d}@example.org", name=f"Member {i:02d}", created_at=START + timedelta(hours=i),
                     status=S.ACTIVE if i % 3 else S.PENDING)
    seen: list[str] = []
    cursor = None
    page_no = 0
    while True:
        page = _search(app, sort="oldest", per_page=7, cursor=cursor)
        seen += [r["email"] for r in page.rows]
        page_no += 1
        # Others join while staff page through (newer and older join dates alike).
        make_account(app, email=f"late{page_no}@example.org", name="Late", created_at=START + timedelta(days=30 + page_no))
        make_account(app, email=f"back{page_no}@example.org", name="Backdated",
                     created_at=START - timedelta(days=page_no))
        cursor = page.next_cursor
        if cursor is None:
            break
    original = [f"m{i:02d}@example.org" for i in range(45)]
    assert [e for e in seen if e in original] == original  # every one, once, in order
    assert len(seen) == len(set(seen))
    newest_first = [r["email"] for r in _search(app, status=S.ACTIVE, per_page=100).rows]
    assert newest_first == [f"m{i:02d}@example.org" for i in reversed(range(45)) if i % 3]


def test_page_numbers_and_cursors_agree(app):
    for i in range(12):
        make_account(app, email=f"p{i:02d}@example.org", name=f"P {i}", created_at=START + timedelta(hours=i))
    by_page = [r["email"] for p in (1, 2, 3) for r in _search(app, per_page=5, page=p).rows]
    first = _search(app, per_page=5)
    second = _search(app, per_page=5, cursor=first.next_cursor)
    third = _search(app, per_page=5, cursor=second.next_cursor)
    by_cursor = [r["email"] for p in (first, second, third) for r in p.rows]
    assert by_page == by_cursor and len(by_cursor) == 12 and third.next_cursor is None
    assert (first.estimate, first.exact) == (12, True)


@pytest.fixture
def many_members(app, database_url):
    """20,000 members straight into PostgreSQL, vacuumed and analysed (as autovacuum would: the
    GIN index's statistics come from VACUUM), so that the planner's choices are real."""
    if not database_url.startswith("postgresql"):
        pytest.skip("query plans are PostgreSQL's")
    engine = create_engine(database_url)
    with engine.begin() as conn:
        conn.execute(text(
            "INSERT INTO accounts (id, email, name, password_hash, role, created_at, updated_at) "
            "SELECT g, 'reader' || g || '@example.org', 'Reader ' || md5(g::text), 'x', 'member', "
            "now() - (g || ' minutes')::interval, now() FROM generate_series(100, 20099) g"))
        conn.execute(text(
            "INSERT INTO memberships (account_id, status, cancel_at_period_end, newsletter_opt_in, "
            "newsletter_desired, newsletter_status, status_changed_at, created_at, updated_at, monthly_value, "
            "paying_twice) SELECT g, (ARRAY['active','pending','canceled','past_due'])[g % 4 + 1], false, true, "
            "'none', 'not_subscribed', now(), now() - (g || ' minutes')::interval, now(), 0, false "
            "FROM generate_series(100, 20099) g"))
        conn.execute(text("SELECT setval('accounts_id_seq', 20100)"))
    with engine.connect() as conn:
        conn.execution_options(isolation_level="AUTOCOMMIT").execute(text("VACUUM ANALYZE accounts, memberships"))
    engine.dispose()
    return app


def _plan(app, f: directory.MemberFilter, page: int = 1) -> str:
    """The plan of the page's id query, as the console runs it."""
    from sqlalchemy import select

    from service.models import Membership

    with app.app_context():
        session = get_session()
        stmt = directory._ordered(f, directory._filtered(f, [Membership.account_id, Membership.created_at]))
        stmt = stmt.offset((page - 1) * 50).limit(51)
        compiled = stmt.compile(dialect=session.get_bind().dialect, compile_kwargs={"render_postcompile": True})
        params = {k: (v.value if hasattr(v, "value") else v) for k, v in compiled.params.items()}
        plan = session.connection().exec_driver_sql(f"EXPLAIN (FORMAT JSON) {compiled}", params).scalar()
        return json.dumps(plan)


@pytest.mark.parametrize("f, index", [
    (directory.MemberFilter(q="reader1234"), "ix_accounts_email_paywall"),             # email prefix
    (directory.MemberFilter(q="reader1234@example.org"), "ix_accounts_email_paywall"),  # exact email
    (directory.MemberFilter(q="d41d8"), "ix_accounts_name_trgm"),                      # name substring
    (directory.MemberFilter(status=S.ACTIVE), "ix_memberships_status_joined"),          # a state, newest first
    (directory.MemberFilter(), "ix_memberships_joined"),                               # everyone, newest first
])
def test_every_search_form_uses_an_index(many_members, f, index):
    plan = _plan(many_members, f, page=20)
    assert index in plan, plan
    scanned = {node["Relation Name"] for node in _nodes(json.loads(plan)[0]["Plan"]) if node["Node Type"] == "Seq Scan"}
    searched = "accounts" if index.startswith("ix_accounts") else "memberships"
    assert searched not in scanned, plan  # the searched table is never read whole


def _nodes(node: dict):
    yield node
    for child in node.get("Plans", []):
        yield from _nodes(child)


def test_the_console_count_is_the_planners_estimate_on_large_results(many_members):
    everyone = _search(many_members)
    assert everyone.exact is False and 15_000 < everyone.estimate < 25_000  # 20,000, from the planner
    assert len(everyone.rows) == 50 and everyone.next_cursor
    active = _search(many_members, status=S.ACTIVE)
    assert (active.estimate, active.exact) == (5000, True)  # small enough to count exactly


def test_service_connections_run_without_jit(app, database_url):
    if not database_url.startswith("postgresql"):
        pytest.skip("PostgreSQL's JIT")
    with app.app_context():
        assert get_session().connection().exec_driver_sql("SHOW jit").scalar() == "off"


def test_a_cursor_with_anything_after_it_is_not_a_cursor():
    good = directory.encode_cursor(START, 42)
    assert directory.decode_cursor(good)[1] == 42
    for bad in (good + "\n", good + "x", " " + good):
        with pytest.raises(directory.BadCursor):
            directory.decode_cursor(bad)


def test_a_search_that_fits_its_page_is_counted_from_the_page_itself(app):
    """No second pass over the matches (on PostgreSQL a name search would walk its trigram
    index twice): the last page by number knows the total."""
    from sqlalchemy import event as sa_event

    for i in range(3):
        make_account(app, email=f"fit{i}@example.org", name=f"Fit {i}")
    seen: list[str] = []

    def record(conn, cursor, statement, *args):
        seen.append(statement)

    engine = app.extensions["db_engine"]
    sa_event.listen(engine, "before_cursor_execute", record)
    try:
        page = _search(app, q="fit", per_page=5)
        last = _search(app, q="fit", per_page=2, page=2)
    finally:
        sa_event.remove(engine, "before_cursor_execute", record)
    assert (page.estimate, page.exact, len(page.rows)) == (3, True, 3)
    assert (last.estimate, last.exact, len(last.rows)) == (3, True, 1)
    assert not [s for s in seen if "count(" in s.lower() or s.startswith("EXPLAIN")]
    first = _search(app, q="fit", per_page=2)  # more to come: counted
    assert (first.estimate, first.exact) == (3, True) and first.next_cursor
