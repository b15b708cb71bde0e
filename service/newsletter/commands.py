"""`flask --app wsgi newsletter ...`: DAWNS Digest deliveries."""
from __future__ import annotations

import click
from flask.cli import AppGroup

newsletter = AppGroup("newsletter", help="DAWNS Digest deliveries.")


@newsletter.command("sync")
@click.option("--watch", is_flag=True, help="Keep running, delivering changes as they fall due.")
@click.option("--batch", default=50, show_default=True, help="Rows claimed at a time.")
def newsletter_sync(watch: bool, batch: int) -> None:
    """Deliver the enrollment changes that are due (retries with backoff)."""
    from .worker import run

    run(watch=watch, batch=batch, echo=click.echo)
