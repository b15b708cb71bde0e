"""`flask --app wsgi members import FILE [--dry-run]`: bring members in from a CSV file (Ghost's
members export, a Mailchimp audience export, or this service's own staff export)."""
from __future__ import annotations

from pathlib import Path

import click
from flask.cli import AppGroup

members = AppGroup("members", help="Members: import from CSV.")


def echo_report(report) -> None:
    click.echo(f"format: {report.format or 'unknown'}; {report.rows} row(s)")
    for problem in sorted(report.errors, key=lambda p: p.line):
        click.echo(f"line {problem.line}: error: {problem.message}")
    for problem in sorted(report.notes, key=lambda p: p.line):
        click.echo(f"line {problem.line}: note: {problem.message}")
    if report.stopped:
        click.echo(f"stopped: {report.stopped}")
    click.echo(report.summary())


@members.command("import")
@click.argument("file", type=click.Path(exists=True, dir_okay=False, readable=True, path_type=Path))
@click.option("--dry-run", is_flag=True, help="Validate every row and report; write nothing.")
def members_import(file: Path, dry_run: bool) -> None:
    """Import members from FILE (CSV). Safe to run again: a second run changes nothing."""
    from ..db import get_session
    from .imports import run_import
    from .runtime import get_gateway

    report = run_import(get_session(), get_gateway(), file.read_bytes(), dry_run=dry_run, file_name=file.name)
    echo_report(report)
    if report.errors or report.stopped:
        raise SystemExit(1)
