"""Fixtures: every test that uses `app` runs on SQLite and, with TEST_DATABASE_URL, on PostgreSQL."""
from __future__ import annotations

import os
import re
import shutil
from pathlib import Path

import pytest
from sqlalchemy import create_engine, text

from service import create_app
from service.db import Base
from service.migrate import head_revision, upgrade

from .support.stripe_standin import StripeStandIn

PG_URL = os.environ.get("TEST_DATABASE_URL", "")

BACKENDS = ["sqlite"] + (["postgresql"] if PG_URL else [])


@pytest.fixture(scope="session")
def sqlite_template(tmp_path_factory) -> Path:
    """Migrate once; each test copies the file (fast, and the schema is the migrated one)."""
    path = tmp_path_factory.mktemp("template") / "template.db"
    upgrade(f"sqlite:///{path}")
    return path


@pytest.fixture(scope="session")
def pg_migrated() -> str:
    engine = create_engine(_psycopg(PG_URL))
    with engine.begin() as conn:
        conn.execute(text("DROP SCHEMA public CASCADE"))
        conn.execute(text("CREATE SCHEMA public"))
    engine.dispose()
    upgrade(_psycopg(PG_URL))
    return _psycopg(PG_URL)


def _psycopg(url: str) -> str:
    return re.sub(r"^postgres(ql)?://", "postgresql+psycopg://", url)


@pytest.fixture(params=BACKENDS)
def database_url(request, tmp_path) -> str:
    if request.param == "sqlite":
        template = request.getfixturevalue("sqlite_template")
        path = tmp_path / "test.db"
        shutil.copy(template, path)
        return f"sqlite:///{path}"
    url = request.getfixturevalue("pg_migrated")
    engine = create_engine(url)
    tables = ", ".join(t.name for t in Base.metadata.sorted_tables)
    with engine.begin() as conn:
        conn.execute(text(f"TRUNCATE {tables} RESTART IDENTITY CASCADE"))
        # A test may have moved the recorded revision (readiness tests); put it back.
        conn.execute(text("UPDATE alembic_version SET version_num = :head"), {"head": head_revision()})
    engine.dispose()
    return url


@pytest.fixture(scope="session")
def stripe_standin():
    standin = StripeStandIn().start()
    yield standin
    standin.stop()


@pytest.fixture
def stripe_api(stripe_standin):
    stripe_standin.reset()
    stripe_standin.serve_membership_price()
    return stripe_standin


from service.paywall.keys import generate_pem  # noqa: E402

PAYWALL_PRIVATE_PEM, PAYWALL_PUBLIC_PEM = generate_pem()

TEST_CONFIG = {
    "PAYWALL_JWT_PRIVATE_KEY": PAYWALL_PRIVATE_PEM,
    "PAYWALL_JWT_KID": "test-key-1",
    "TESTING": True,
    "SECRET_KEY": "test-secret-key",
    "PUBLIC_BASE_URL": "http://localhost",
    "STRIPE_SECRET_KEY": "sk_test_123",
    "STRIPE_WEBHOOK_SECRET": "whsec_test_secret",
    "STRIPE_PRICE_ID": "price_test_monthly",
    "STRIPE_PRODUCT_ID": "prod_test_membership",
    "STRIPE_MAX_NETWORK_RETRIES": 0,
    "STRIPE_TIMEOUT": 2.0,
    "DEMO_CHECKOUT": False,
    "MAIL_BACKEND": "log",
    # Cheap hashing in tests; production uses scrypt.
    "PASSWORD_HASH_METHOD": "pbkdf2:sha256:1000",
    "RATELIMIT_LOGIN": "1000 per minute",
    "RATELIMIT_JOIN": "1000 per minute",
    "RATELIMIT_RESET": "1000 per minute",
    "RATELIMIT_SIGNIN_LINK": "1000 per minute",
    "RATELIMIT_SUCCESS": "1000 per minute",
    "RATELIMIT_STORAGE_URI": "memory://",
    # Tests change the catalogue behind the service's back; the cache is tested on its own.
    "CATALOGUE_CACHE_SECONDS": 0,
}


@pytest.fixture
def make_app(database_url, stripe_api, tmp_path):
    apps = []

    def factory(**overrides):
        config = {**TEST_CONFIG, "DATABASE_URL": database_url, "STRIPE_API_BASE": stripe_api.url,
                  "NEWSLETTER_LOG_PATH": str(tmp_path / "newsletter-log.jsonl"),
                  "MAIL_LOG_PATH": str(tmp_path / "mail-log.jsonl"), **overrides}
        app = create_app(config)
        apps.append(app)
        if (config["STRIPE_API_BASE"] == stripe_api.url and config["DATABASE_URL"] == database_url
                and config.get("STRIPE_PRICE_ID") and not config["DEMO_CHECKOUT"]):
            _seed_catalogue(app)
            stripe_api.requests.clear()  # as a started service: the catalogue read STRIPE_PRICE_ID once
        return app

    yield factory
    from service.api.lookup import close_thread_connections

    close_thread_connections()
    for app in apps:
        app.extensions["db_engine"].dispose()
        app.extensions["db_read_engine"].dispose()
        if "db_queue_engine" in app.extensions:
            app.extensions["db_queue_engine"].dispose()


def _seed_catalogue(app) -> None:
    from service.billing.runtime import get_gateway
    from service.db import get_session
    from service.membership import catalogue

    with app.app_context():  # as the service does on first use
        catalogue.ensure_once(get_session(), get_gateway())
        get_session().commit()


@pytest.fixture
def app(make_app):
    return make_app()


@pytest.fixture
def client(app):
    return app.test_client()


@pytest.fixture
def runner(app):
    return app.test_cli_runner()


@pytest.fixture
def localstripe(tmp_path):
    """A fresh localstripe per test: its delayed webhooks must not reach another test's server."""
    from .support.localstripe import LocalStripe

    ls = LocalStripe(str(tmp_path / "localstripe.log"))
    yield ls
    ls.stop()


def _demo(make_app, localstripe, port: int | None = None, **config):
    """The embedded default end to end: demo pages, localstripe, real signed webhooks, the app
    served by a real server with the worker beside it."""
    import secrets as _secrets

    from service.demo.localstripe import register_localstripe_webhook, seed_demo_catalogue

    from .support.server import LiveServer, free_port

    port = port or free_port()
    settings = localstripe.provision("http://127.0.0.1:9/unused")
    secret = "whsec_" + _secrets.token_hex(16)
    app = make_app(STRIPE_SECRET_KEY=settings["STRIPE_SECRET_KEY"], STRIPE_API_BASE=settings["STRIPE_API_BASE"],
                   STRIPE_PRICE_ID=settings["STRIPE_PRICE_ID"], STRIPE_PRODUCT_ID=settings["STRIPE_PRODUCT_ID"],
                   STRIPE_WEBHOOK_SECRET=secret, DEMO_CHECKOUT=True, STRIPE_API_VERSION="2017-08-15", **config)
    seed_demo_catalogue(app)  # what `make run` offers
    server = LiveServer(app, worker=True, port=port)
    register_localstripe_webhook(localstripe.url, f"{server.url}/stripe/webhook", secret, name="tests")
    return app, server


@pytest.fixture
def live_demo(make_app, localstripe):
    app, server = _demo(make_app, localstripe)
    yield app
    server.stop()


@pytest.fixture
def served_demo(make_app, localstripe):
    """The same, with PUBLIC_BASE_URL on the server's own address (a browser follows redirects)."""
    from .support.server import free_port

    port = free_port()
    app, server = _demo(make_app, localstripe, port=port, PUBLIC_BASE_URL=f"http://127.0.0.1:{port}")
    yield app, server
    server.stop()


@pytest.fixture
def mailchimp():
    from .support.mailchimp_standin import MailchimpStandIn

    standin = MailchimpStandIn()
    yield standin
    standin.stop()


@pytest.fixture
def mc_app(make_app, mailchimp):
    """The app with the Mailchimp adapter pointed at the stand-in; retries due at once."""
    return make_app(NEWSLETTER_PROVIDER="mailchimp", MAILCHIMP_API_KEY=mailchimp.api_key,
                    MAILCHIMP_SERVER_PREFIX="us1", MAILCHIMP_LIST_ID=mailchimp.list_id,
                    MAILCHIMP_API_BASE=mailchimp.base, NEWSLETTER_BACKOFF_BASE=0.0,
                    NEWSLETTER_TIMEOUT=1.0,
                    MAILCHIMP_WEBHOOK_SECRET="mc-hook-secret")
