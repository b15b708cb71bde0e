"""`flask newsletter sync [--watch]`: any number of copies can run (rows are claimed)."""
from __future__ import annotations

import signal
import threading
from collections.abc import Callable

from flask import current_app

from ..db import close_session, get_session
from .outbox import sync_once
from .runtime import get_provider


def run(*, watch: bool, batch: int, echo: Callable[[str], None]) -> None:
    stop = threading.Event()
    if watch:
        for sig in (signal.SIGTERM, signal.SIGINT):
            signal.signal(sig, lambda *_: stop.set())
    provider = get_provider()
    poll = current_app.config["NEWSLETTER_POLL_SECONDS"]
    while True:
        try:
            report = sync_once(get_session(), provider, batch=batch)
        finally:
            close_session()
        if report.delivered or report.retried or report.failed or not watch:
            echo(f"newsletter: delivered {report.delivered}, retrying {report.retried}, failed {report.failed}")
        if not watch or stop.wait(poll):
            return
