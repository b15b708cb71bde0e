from __future__ import annotations

from sqlalchemy import create_engine, inspect
from werkzeug.security import check_password_hash

from service.db import get_session
from service.domain.membership import Role
from service.accounts.services import find_by_email


def test_db_upgrade_migrates_an_empty_database(make_app, tmp_path):
    url = f"sqlite:///{tmp_path / 'fresh.db'}"
    app = make_app(DATABASE_URL=url)
    result = app.test_cli_runner().invoke(args=["db", "upgrade"])
    assert result.exit_code == 0, result.output
    engine = create_engine(url)
    assert "accounts" in inspect(engine).get_table_names()
    engine.dispose()
    # Repeatable.
    assert app.test_cli_runner().invoke(args=["db", "upgrade"]).exit_code == 0


def test_staff_create_reads_the_password_from_stdin(app, runner):
    result = runner.invoke(args=["staff", "create", "Editor@Example.org", "--role", "admin"],
                           input="a strong staff password\n")
    assert result.exit_code == 0, result.output
    assert "admin account editor@example.org" in result.output
    with app.app_context():
        acc = find_by_email("editor@example.org")
        assert acc.role == Role.ADMIN
        assert check_password_hash(acc.password_hash, "a strong staff password")
        assert acc.membership is None
        get_session().close()


def test_staff_create_refuses_a_short_password(app, runner):
    result = runner.invoke(args=["staff", "create", "e@example.org"], input="short\n")
    assert result.exit_code != 0 and "at least 10 characters" in result.output
    with app.app_context():
        assert find_by_email("e@example.org") is None


def _reader_session(app, email="reader@example.org"):
    from .support.factories import PASSWORD, make_account
    from .support.web import login

    make_account(app, email=email)
    client = app.test_client()
    login(client, email, PASSWORD)
    assert client.get("/account").status_code == 200
    return client


def test_promoting_a_reader_needs_promote_and_ends_their_sessions(app, runner):
    client = _reader_session(app, "new.editor@example.org")
    refused = runner.invoke(args=["staff", "create", "new.editor@example.org", "--role", "admin"],
                            input="a strong staff password\n")
    assert refused.exit_code != 0 and "--promote" in refused.output
    with app.app_context():
        assert find_by_email("new.editor@example.org").role == Role.MEMBER
    assert client.get("/staff").status_code == 403
    done = runner.invoke(args=["staff", "create", "new.editor@example.org", "--role", "admin", "--promote"],
                         input="a strong staff password\n")
    assert done.exit_code == 0, done.output
    # The session that existed before the promotion is over: it cannot reach the staff pages.
    assert client.get("/staff").status_code == 302
