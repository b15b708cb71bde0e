"""Prometheus metrics: the counters and histograms every layer moves, in multiprocess mode.

`prometheus_client` in multiprocess mode keeps each process's values in files under
PROMETHEUS_MULTIPROC_DIR, and a scrape adds up every process's files, so each gunicorn worker
(and the worker process, when it shares the directory) counts. Without PROMETHEUS_MULTIPROC_DIR
this process makes a temporary directory of its own (development, tests: one process).
Production sets it to an empty directory, emptied at each start of the service.

What is measured at scrape time (queue backlogs, members by state) and the `/metrics` route
with its access rule live in `service/api/metrics.py`. Beside the layers: every layer may use
this module; it imports nothing of the service.

Label values are bounded: event types come from verified Stripe events, kinds and outcomes
from fixed lists here.
"""
from __future__ import annotations

import atexit
import ipaddress
import os
import shutil
import tempfile
from collections.abc import Iterable

if not os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
    _own_dir = tempfile.mkdtemp(prefix="dawns-metrics-")
    _owner = os.getpid()
    os.environ["PROMETHEUS_MULTIPROC_DIR"] = _own_dir

    @atexit.register
    def _remove_own_dir() -> None:
        if os.getpid() == _owner:
            shutil.rmtree(_own_dir, ignore_errors=True)

from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, Counter, Histogram, generate_latest  # noqa: E402
from prometheus_client import multiprocess, values  # noqa: E402

# Chosen when prometheus_client was first imported (maybe before the directory was set): make
# sure it is the multiprocess one.
if values.ValueClass is values.MutexValue:
    values.ValueClass = values.get_value_class()

CONTENT_TYPE = CONTENT_TYPE_LATEST

WEBHOOK_OUTCOMES = ("stored", "duplicate", "bad_signature", "unavailable")

webhook_deliveries = Counter(
    "dawns_stripe_webhook_deliveries_total",
    "Stripe webhook deliveries received, by event type and what storing them did "
    "(stored, duplicate, bad_signature, unavailable).",
    ["type", "outcome"])
events_applied = Counter(
    "dawns_stripe_events_applied_total",
    "Stored Stripe events the worker handled, by event type and outcome (the handler's outcome, "
    "or retried / failed).",
    ["type", "outcome"])
entitlement_seconds = Histogram(
    "dawns_entitlement_check_seconds",
    "Time to answer GET /api/v1/entitlements (the fast path in front of Flask), by HTTP status.",
    ["status"],
    buckets=(0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5))
stripe_errors = Counter(
    "dawns_stripe_errors_total",
    "Stripe API calls that failed, by kind (card, authentication, invalid_request, not_found, "
    "rate_limited, unavailable).",
    ["kind"])
mailchimp_errors = Counter(
    "dawns_mailchimp_errors_total",
    "Mailchimp API calls that failed, by kind (timeout, unreachable, rate_limited, server_error, refused).",
    ["kind"])


def webhook_delivery(event_type: str | None, outcome: str) -> None:
    webhook_deliveries.labels(type=event_type or "unknown", outcome=outcome).inc()


def stripe_event_applied(event_type: str, outcome: str) -> None:
    events_applied.labels(type=event_type, outcome=outcome).inc()


def entitlement_answered(status: int, seconds: float) -> None:
    entitlement_seconds.labels(status=str(status)).observe(seconds)


def stripe_error(kind: str) -> None:
    stripe_errors.labels(kind=kind).inc()


def mailchimp_error(kind: str) -> None:
    mailchimp_errors.labels(kind=kind).inc()


def ip_allowed(remote_addr: str | None, allowed: Iterable[str]) -> bool:
    """Whether `remote_addr` is one of METRICS_ALLOWED_IPS (addresses or CIDR networks)."""
    if not remote_addr:
        return False
    try:
        addr = ipaddress.ip_address(remote_addr)
    except ValueError:
        return False
    if isinstance(addr, ipaddress.IPv6Address) and addr.ipv4_mapped is not None:
        addr = addr.ipv4_mapped
    for entry in allowed:
        try:
            if addr in ipaddress.ip_network(entry, strict=False):
                return True
        except ValueError:
            continue  # a malformed entry allows nobody
    return False


def render(*collectors) -> bytes:
    """The text exposition: every process's counters and histograms, plus `collectors` (values
    measured now, such as queue backlogs)."""
    registry = CollectorRegistry(auto_describe=True)
    multiprocess.MultiProcessCollector(registry)
    for collector in collectors:
        registry.register(collector)
    return generate_latest(registry)
