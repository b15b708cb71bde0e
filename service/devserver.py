"""`flask --app wsgi demo`: the embedded default behind `make run`.

Without Stripe keys in the environment or `.env`, start localstripe (a fake Stripe server) as a
child process on a free port, provision it (the membership product, its $5/month and $50/year
plans, our webhook with a fresh signing secret), and serve the site with the demo Checkout and
Portal pages. With keys, serve against real Stripe and no stand-in. Ctrl-C or SIGTERM stops
everything this started. An entry point like `wsgi.py`: it builds the app, so it sits above
every layer.
"""
from __future__ import annotations

import os
import secrets
import signal
import subprocess
import threading
from pathlib import Path

import click
from flask import current_app
from flask.cli import with_appcontext
from werkzeug.serving import run_simple

from .demo.localstripe import DEMO_STAFF_EMAIL, provision_localstripe, seed_demo_catalogue, start_localstripe
from .logs import configure as configure_logging
from .worker import start_in_thread


@click.command("demo")
@with_appcontext
@click.option("--host", default="127.0.0.1", show_default=True)
@click.option("--port", default=5000, show_default=True, type=int)
@click.option("--seed", type=int, default=None, metavar="N",
              help="Add N demo members with 18 months of history (for /staff/insights), then exit. "
                   "Refused when PUBLIC_BASE_URL is https.")
def demo(host: str, port: int, seed: int | None) -> None:
    """Serve the embedded default: localstripe stand-in (unless Stripe keys are set) and a demo staff
    login. With --seed N: add demo members and their history instead, then exit."""
    if seed is not None:
        seed_members(seed)
        return
    run_demo(host, port)


def seed_members(count: int) -> None:
    from .db import get_session
    from .demo.seed import DOMAIN, SeedRefused, seed

    if not _migrated():
        raise click.ClickException("the database is not migrated: run `flask --app wsgi db upgrade` first")
    try:
        done = seed(get_session(), count, public_base_url=current_app.config["PUBLIC_BASE_URL"])
    except SeedRefused as exc:
        raise click.ClickException(str(exc)) from None
    if done.members:
        click.echo(f"Added {done.members} demo members (…@{DOMAIN}) and {done.history_rows} history rows.")
    else:
        click.echo(f"{count} demo members exist already: nothing added.")


DEMO_ENV_FILE = "demo-stripe.env"


def _migrated() -> bool:
    from sqlalchemy.exc import SQLAlchemyError

    from .db import get_engine
    from .migrate import current_revision, head_revision

    try:
        with get_engine().connect() as conn:
            return current_revision(conn) == head_revision()
    except SQLAlchemyError:
        return False


def _stop_on_sigterm() -> None:
    """`kill`, systemd or a stopped container end the demo like Ctrl-C: localstripe goes too."""
    def stop(*_):
        raise KeyboardInterrupt

    signal.signal(signal.SIGTERM, stop)


def run_demo(host: str, port: int) -> None:
    from . import create_app
    from .accounts.services import create_staff
    from .domain.membership import Role

    if not _migrated():
        raise click.ClickException("the database is not migrated: run `flask --app wsgi db upgrade` first "
                                   "(`make run` does)")
    _stop_on_sigterm()
    if not os.environ.get("LOG_FORMAT"):
        # Readable lines for development; the app built below reads it, and so does this set-up.
        os.environ["LOG_FORMAT"] = "text"
        configure_logging("text")
    base_url = f"http://{host}:{port}"
    if not os.environ.get("PUBLIC_BASE_URL"):
        os.environ["PUBLIC_BASE_URL"] = base_url  # links, Checkout returns and mail point at this port
    env_file = Path(current_app.instance_path) / DEMO_ENV_FILE
    child = None
    try:
        if not current_app.config["STRIPE_SECRET_KEY"]:
            child, api_base = start_localstripe(log_path=str(Path(current_app.instance_path) / "localstripe.log"))
            settings = provision_localstripe(api_base, f"{base_url}/stripe/webhook")
            os.environ.update(settings)
            # Other commands (`stripe reconcile`, `levels list`) reach this stand-in with these.
            env_file.write_text("".join(f"{k}={v}\n" for k, v in settings.items()))
            env_file.chmod(0o600)
            click.echo(f"localstripe (Stripe stand-in) running at {api_base}, pid {child.pid}")
            click.echo(f"  Its settings, for other commands: set -a; . {env_file}; set +a")
        else:
            click.echo("Stripe keys found: using Stripe, no stand-in.")
        app = create_app()
        if app.config["DEMO_CHECKOUT"]:
            seed_demo_catalogue(app)
        password = secrets.token_urlsafe(12)
        with app.app_context():
            create_staff(DEMO_STAFF_EMAIL, "Demo staff", password, Role.ADMIN)
        click.echo("")
        click.echo(f"  Membership service: {os.environ['PUBLIC_BASE_URL']}/")
        click.echo(f"  Demo staff login:   {DEMO_STAFF_EMAIL} / {password}   (admin, at /login)")
        click.echo("  The worker runs inside this process (production runs `flask --app wsgi worker`).")
        click.echo("  Press Ctrl-C to stop.")
        click.echo("")
        stop_worker = threading.Event()
        start_in_thread(app, stop_worker)
        try:
            run_simple(host, port, app, threaded=True, use_reloader=False)
        finally:
            stop_worker.set()
    except KeyboardInterrupt:
        pass
    finally:
        if child is not None:
            env_file.unlink(missing_ok=True)
            child.terminate()
            try:
                child.wait(timeout=5)
            except subprocess.TimeoutExpired:
                child.kill()
