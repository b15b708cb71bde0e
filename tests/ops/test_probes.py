from __future__ import annotations

from sqlalchemy import create_engine, text


def test_healthz_answers_while_the_process_is_up(client):
    resp = client.get("/healthz")
    assert resp.status_code == 200 and resp.json == {"status": "ok"}


def test_readyz_ok_when_database_reachable_and_migrated(client):
    resp = client.get("/readyz")
    assert resp.status_code == 200
    assert resp.json["checks"] == {"database": "ok", "migrations": "ok"}


def test_readyz_503_when_migrations_are_behind(app, client, database_url):
    engine = create_engine(database_url)
    with engine.begin() as conn:
        conn.execute(text("UPDATE alembic_version SET version_num = 'old'"))
    engine.dispose()
    resp = client.get("/readyz")
    assert resp.status_code == 503 and resp.json["checks"]["migrations"].startswith("at old")


def test_readyz_503_when_database_unreachable(make_app):
    app = make_app(DATABASE_URL="postgresql+psycopg://nobody@127.0.0.1:1/none")
    resp = app.test_client().get("/readyz")
    assert resp.status_code == 503 and resp.json["checks"] == {"database": "unreachable"}
