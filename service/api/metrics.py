"""GET /metrics: Prometheus text format, for METRICS_ALLOWED_IPS or a `metrics:read` token.

The counters and histograms are `service/metrics.py`'s (every process's, in multiprocess
mode); what is measured here, at scrape time, is the queues (backlog and the age of the oldest
due row, per outbox: the same cheap indexed queries as /readyz) and the members by state
(one GROUP BY, recomputed at most every MEMBERS_CACHE_SECONDS per process).
"""
from __future__ import annotations

import logging
import threading
import time

from flask import Blueprint, Response, current_app, request
from prometheus_client.core import GaugeMetricFamily
from sqlalchemy import func, select
from sqlalchemy.exc import SQLAlchemyError

from .. import mail, metrics
from ..billing import queue as stripe_queue
from ..db import get_session
from ..errors import json_error
from ..membership import exports
from ..models import Membership
from ..newsletter import outbox
from . import auth

log = logging.getLogger("service.metrics")

bp = Blueprint("metrics", __name__)

MEMBERS_CACHE_SECONDS = 30.0
QUEUES = (("stripe_events", stripe_queue.depth), ("newsletter", outbox.depth), ("mail", mail.depth),
          ("exports", exports.depth))


class _MemberCounts:
    """Members by state, read at most every MEMBERS_CACHE_SECONDS (one GROUP BY on an index)."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.at = float("-inf")
        self.counts: dict[str, int] = {}

    def get(self, session) -> dict[str, int]:
        with self.lock:
            if time.monotonic() - self.at >= MEMBERS_CACHE_SECONDS:
                rows = session.execute(select(Membership.status, func.count()).group_by(Membership.status)).all()
                self.counts = {getattr(s, "value", s): int(n) for s, n in rows}
                self.at = time.monotonic()
            return dict(self.counts)


def member_counts() -> _MemberCounts:
    """This app's cache (each app has its own database)."""
    return current_app.extensions.setdefault("metrics_member_counts", _MemberCounts())


class ScrapeTimeCollector:
    """Queue backlogs and members by state, measured when Prometheus asks."""

    def collect(self):
        session = get_session()
        backlog = GaugeMetricFamily("dawns_outbox_backlog", "Rows due in each outbox (queue) now.", labels=["outbox"])
        oldest = GaugeMetricFamily("dawns_outbox_oldest_due_age_seconds",
                                   "Seconds the oldest due row of each outbox has waited (0 when none is due).",
                                   labels=["outbox"])
        up = GaugeMetricFamily("dawns_database_up", "1 when the scrape could read the database, else 0.")
        members = GaugeMetricFamily("dawns_members", "Memberships by state (cached up to 30 s).", labels=["state"])
        try:
            for name, measure in QUEUES:
                depth, age = measure(session)
                backlog.add_metric([name], depth)
                oldest.add_metric([name], age or 0.0)
            for state, count in sorted(member_counts().get(session).items()):
                members.add_metric([state], count)
            up.add_metric([], 1)
        except SQLAlchemyError as exc:
            log.error("metrics: database unavailable (%s)", exc.__class__.__name__)
            up.add_metric([], 0)
        finally:
            session.rollback()
        yield backlog
        yield oldest
        yield members
        yield up


def _through_untrusted_proxy() -> bool:
    """A request a proxy forwarded while TRUST_PROXY_HOPS says none: its address is the proxy's
    (127.0.0.1 for a local one), never the caller's, so it opens nothing by address."""
    forwarded = any(h in request.headers for h in ("X-Forwarded-For", "Forwarded", "X-Real-IP"))
    return forwarded and not current_app.config.get("TRUST_PROXY_HOPS")


def allowed() -> auth.Denied | None:
    """None when the caller may scrape: an allowed address, or a live `metrics:read` token."""
    if metrics.ip_allowed(request.remote_addr, current_app.config.get("METRICS_ALLOWED_IPS") or ()) \
            and not _through_untrusted_proxy():
        return None
    header = request.headers.get("Authorization")
    if not header:
        return auth.Denied(403, "forbidden", "Metrics are open to METRICS_ALLOWED_IPS or a token with the "
                                             f"{auth.METRICS_READ} scope.")
    verdict = auth.authenticate(get_session(), header, auth.METRICS_READ)
    get_session().rollback()
    if isinstance(verdict, auth.Denied):
        return auth.Denied(403, verdict.code if verdict.status == 403 else "forbidden", verdict.message, verdict.headers)
    return None


@bp.get("/metrics")
def scrape():
    denied = allowed()
    if denied is not None:
        return json_error(denied.status, denied.message, denied.code, headers=denied.headers)
    return Response(metrics.render(ScrapeTimeCollector()), mimetype=None,
                    headers={"Content-Type": metrics.CONTENT_TYPE, "Cache-Control": "no-store"})
