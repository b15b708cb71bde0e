"""`flask --app wsgi db ...`: the schema (Alembic)."""
from __future__ import annotations

import click
from flask import current_app
from flask.cli import AppGroup

db = AppGroup("db", help="Database migrations (Alembic).")


@db.command("upgrade")
@click.argument("revision", default="head")
def db_upgrade(revision: str) -> None:
    """Apply migrations up to REVISION (default: head)."""
    from .migrate import upgrade

    upgrade(current_app.config["DATABASE_URL"], revision)
    click.echo(f"database at {revision}")
