"""`make bench`: every performance bar of the spec, measured in one run on PostgreSQL.

Prints ratios measured in the same run (the machine is shared and noisy, so absolute numbers
move; ratios of things measured side by side are what the bars are about):

1. the entitlement check / a bare Flask JSON route (both gunicorn, 4 sync workers);
2. webhook acceptance / the reference route ("C": construct_event + one INSERT + commit);
3. the apply rate of one worker on a 20,000-event backlog, for subscription events and for
   invoice events that read the subscription from a local Stripe stand-in, as events/s and / C;
4. staff search latencies (median, p95) at N members, and / GET /api/v1/members/<id>;
5. a CSV export of every member / `psql \\copy` of the same columns, and the worker's RSS growth.

    make bench                                   # 1,000,000 members (about 15 minutes)
    make bench BENCH_ARGS="--members 100000"     # a shorter run
"""
from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench.entitlements import DB_NAME, SERVICE_HOST, fresh_database, serve  # noqa: E402

BIN = Path(sys.executable).parent
SECRET = "whsec_bench_secret"
PRICE, PRODUCT = "price_bench_monthly", "prod_bench_membership"
BACKLOG = 20_000
STAFF_EMAIL, STAFF_PASSWORD = "bench-staff@example.org", "bench staff password"


def sh(*args: str, env: dict | None = None, **kw) -> subprocess.CompletedProcess:
    return subprocess.run(list(args), cwd=ROOT, env={**os.environ, **(env or {})}, check=True,
                          capture_output=True, text=True, **kw)


# --- the database ----------------------------------------------------------------------------

def prepare(members: int) -> tuple[str, str]:
    """A fresh database with `members` readers (and their memberships) and the catalogue."""
    url = fresh_database()
    import psycopg

    raw = url.replace("postgresql+psycopg://", "postgresql://")
    statuses = ["active", "active", "active", "past_due", "canceled", "pending", "lapsed", "comped"]
    with psycopg.connect(raw, autocommit=True) as conn:
        conn.execute("DROP INDEX ix_accounts_name_trgm")  # built once after the load, not row by row
        with conn.cursor() as cur:
            with cur.copy("COPY accounts (id, email, name, password_hash, role, created_at, updated_at) "
                          "FROM STDIN") as cp:
                for i in range(1, members + 1):
                    stamp = f"2025-01-01T00:00:00+00"
                    cp.write_row((i, f"bench{i}@example.org", f"Bench Reader {i}", "x", "member", stamp, stamp))
            with cur.copy("COPY memberships (account_id, status, paid_through, cancel_at_period_end, "
                          "newsletter_opt_in, newsletter_desired, newsletter_status, status_changed_at, created_at, "
                          "updated_at, monthly_value, paying_twice, level_name, level_amount, level_currency, "
                          "level_interval, stripe_customer_id) FROM STDIN") as cp:
                for i in range(1, members + 1):
                    joined = f"2025-01-01T00:00:00+00"
                    cp.write_row((i, statuses[i % len(statuses)], "2027-01-01T00:00:00+00", False, True, "none",
                                  "not_subscribed", joined, time.strftime("2025-%m-%dT%H:%M:%S+00",
                                                                          time.gmtime(1735689600 + i * 17)),
                                  joined, 500, False, "Member", 500, "usd", "month",
                                  f"cus_B{i}" if i <= BACKLOG else None))
            with cur.copy("COPY stripe_customers (stripe_id, account_id, deleted, created_at, updated_at) "
                          "FROM STDIN") as cp:
                for i in range(1, BACKLOG + 1):
                    cp.write_row((f"cus_B{i}", i, False, "2025-01-01T00:00:00+00", "2025-01-01T00:00:00+00"))
            # The subscriptions of the first BACKLOG members, as the service holds them (an older
            # snapshot): the apply backlog's `customer.subscription.updated` events update them.
            sub_status = {"active": "active", "past_due": "past_due", "canceled": "canceled", "pending": "incomplete",
                          "lapsed": "unpaid", "comped": "canceled"}
            with cur.copy("COPY stripe_subscriptions (stripe_id, customer_stripe_id, account_id, status, price_id, "
                          "current_period_end, current_period_start, cancel_at_period_end, snapshot_at, created_at, "
                          "updated_at, stripe_created_at, items) FROM STDIN") as cp:
                for i in range(1, BACKLOG + 1):
                    item = {"id": f"si_B{i}", "price": PRICE, "product": PRODUCT, "amount": 500, "currency": "usd",
                            "interval": "month", "quantity": 1}
                    cp.write_row((f"sub_B{i}", f"cus_B{i}", i, sub_status[statuses[i % len(statuses)]], PRICE,
                                  "2027-01-01T00:00:00+00", "2026-12-01T00:00:00+00", False, "2025-01-01T00:00:00+00",
                                  "2025-01-01T00:00:00+00", "2025-01-01T00:00:00+00", "2025-01-01T00:00:00+00",
                                  json.dumps([item])))
        conn.execute("CREATE INDEX ix_accounts_name_trgm ON accounts USING gin (lower(name) gin_trgm_ops)")
        conn.execute(f"SELECT setval('accounts_id_seq', {members})")
        conn.execute("INSERT INTO levels (id, name, amount, currency, interval, stripe_price_id, public, archived, "
                     "position, \"default\", created_at) VALUES (1, 'Member', 500, 'usd', 'month', %s, true, false, 0, "
                     "true, now())", (PRICE,))
        conn.execute("INSERT INTO level_prices (stripe_price_id, level_id, product_id, amount, currency, interval, "
                     "created_at) VALUES (%s, 1, %s, 500, 'usd', 'month', now())", (PRICE, PRODUCT))
        conn.execute("CREATE TABLE bench_reference_events (id bigserial PRIMARY KEY, stripe_id text UNIQUE, "
                     "payload text)")
        conn.execute("VACUUM (ANALYZE)")
        conn.execute("CHECKPOINT")
    service_url = url
    if SERVICE_HOST and Path(SERVICE_HOST).exists():
        service_url = f"postgresql+psycopg://postgres@/{DB_NAME}?host={SERVICE_HOST}"
    return url, service_url


def env_for(service_url: str, **more: str) -> dict[str, str]:
    return {"DATABASE_URL": service_url, "SECRET_KEY": "bench-secret", "STRIPE_SECRET_KEY": "sk_test_bench",
            "STRIPE_WEBHOOK_SECRET": SECRET, "STRIPE_PRICE_ID": PRICE, "STRIPE_PRODUCT_ID": PRODUCT,
            "RATELIMIT_API": "100000000 per minute", "RATELIMIT_LOGIN": "100000 per minute",
            "NEWSLETTER_PROVIDER": "log", "MAIL_BACKEND": "log", "PUBLIC_BASE_URL": "http://127.0.0.1",
            "CATALOGUE_CACHE_SECONDS": "300", **more}


# --- Stripe-shaped things ----------------------------------------------------------------------

def subscription(i: int, status: str = "active") -> dict:
    start = 1764000000
    return {"id": f"sub_B{i}", "object": "subscription", "customer": f"cus_B{i}", "status": status,
            "cancel_at_period_end": False, "cancel_at": None, "canceled_at": None, "ended_at": None,
            "created": start, "livemode": False, "metadata": {},
            "items": {"object": "list", "has_more": False, "data": [{
                "id": f"si_B{i}", "object": "subscription_item", "quantity": 1,
                "current_period_start": start, "current_period_end": start + 30 * 86400,
                "price": {"id": PRICE, "object": "price", "product": PRODUCT, "unit_amount": 500, "currency": "usd",
                          "recurring": {"interval": "month", "interval_count": 1}}}]}}


def event(n: int, type_: str, obj: dict, created: int) -> dict:
    return {"id": f"evt_bench_{n}", "object": "event", "api_version": "2025-03-31.basil", "created": created,
            "data": {"object": obj}, "livemode": False, "pending_webhooks": 1, "type": type_,
            "request": {"id": None, "idempotency_key": None}}


def signed_file(path: Path, count: int, prefix: str) -> None:
    """`count` distinct subscription events, signed now (valid for Stripe's 300 s tolerance)."""
    import stripe

    with open(path, "w") as out:
        for n in range(count):
            i = n % BACKLOG + 1
            payload = json.dumps(event(f"{prefix}{n}", "customer.subscription.updated", subscription(i),
                                       1764000000 + n), separators=(",", ":"))
            out.write(stripe.WebhookSignature.generate_signature_header(payload, SECRET) + "\t" + payload + "\n")


class StripeStandIn:
    """GET /v1/subscriptions/<id> and /v1/prices/<id>, as Stripe shapes them, over HTTP/1.1."""

    def __init__(self) -> None:
        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"
            disable_nagle_algorithm = True  # headers and body leave at once (no 40 ms delayed-ACK stall)

            def log_message(self, *args):
                pass

            def do_GET(self):  # noqa: N802
                kind, _, key = self.path.strip("/").partition("/")[2].partition("/")
                if kind == "subscriptions":
                    body = subscription(int(key.removeprefix("sub_B")))
                else:
                    body = {"id": key, "object": "price", "product": PRODUCT, "unit_amount": 500, "currency": "usd",
                            "active": True, "type": "recurring",
                            "recurring": {"interval": "month", "interval_count": 1, "usage_type": "licensed"}}
                payload = json.dumps(body).encode()
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(payload)))
                self.end_headers()
                self.wfile.write(payload)

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()


# --- 2. webhook acceptance --------------------------------------------------------------------

def accept(url: str, service_url: str, seconds: int, rounds: int, connections: int) -> dict:
    from sqlalchemy import create_engine, text

    servers = {"reference": serve("bench.reference_webhook:app", env_for(service_url), 4, 1),
               "service": serve("wsgi:app", env_for(service_url), 4, 1)}
    results: dict[str, list[dict]] = {"reference": [], "service": []}
    tmp = Path(tempfile.mkdtemp())
    try:
        for r in range(rounds + 1):  # the first round warms up
            for name, (_, port) in servers.items():
                path = tmp / f"{name}{r}.tsv"
                signed_file(path, 4000 * seconds, f"{name}{r}_")
                out = subprocess.run(
                    ["wrk", "-t2", f"-c{connections}", f"-d{seconds}s", "--latency", "-s",
                     str(ROOT / "bench" / "signed_events.lua"), f"http://127.0.0.1:{port}"],
                    env={**os.environ, "BENCH_EVENTS": str(path), "BENCH_THREADS": "2"},
                    capture_output=True, text=True, check=True).stdout
                if r:
                    results[name].append(_wrk(out))
    finally:
        for proc, _ in servers.values():
            proc.terminate()
            proc.wait(timeout=10)
        shutil.rmtree(tmp, ignore_errors=True)
    engine = create_engine(url)
    with engine.begin() as conn:  # the accepted events are not the apply backlog
        conn.execute(text("TRUNCATE stripe_events, bench_reference_events"))
    engine.dispose()
    return {k: _median(v) for k, v in results.items()}


def _wrk(out: str) -> dict:
    rps = float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1))
    non2xx = re.search(r"Non-2xx or 3xx responses:\s+(\d+)", out)

    def pct(p: str) -> float:
        m = re.search(rf"^\s+{p}%\s+([\d.]+)(us|ms|s)\s*$", out, re.M)
        value, unit = float(m.group(1)), m.group(2)
        return value / 1000 if unit == "us" else value * 1000 if unit == "s" else value

    return {"rps": rps, "p50": pct("50"), "p99": pct("99"), "errors": int(non2xx.group(1)) if non2xx else 0}


def _median(rows: list[dict]) -> dict:
    return {k: statistics.median(r[k] for r in rows) for k in rows[0]}


# --- 3. the apply rate --------------------------------------------------------------------------

def backlog(url: str, kind: str) -> None:
    import psycopg

    raw = url.replace("postgresql+psycopg://", "postgresql://")
    with psycopg.connect(raw, autocommit=True) as conn, conn.cursor() as cur:
        cur.execute("TRUNCATE stripe_events")
        with cur.copy("COPY stripe_events (stripe_id, type, stripe_created_at, livemode, object_id, customer_stripe_id, "
                      "payload, outcome, received_at, status, attempts, next_attempt_at) FROM STDIN") as cp:
            base = int(time.time()) - BACKLOG  # newer than any snapshot held: each event is applied
            for n in range(BACKLOG):
                i = n + 1
                created = base + n
                if kind == "invoice.paid":
                    obj = {"id": f"in_B{i}", "object": "invoice", "customer": f"cus_B{i}", "status": "paid",
                           "parent": {"type": "subscription_details",
                                      "subscription_details": {"subscription": f"sub_B{i}"}}}
                else:
                    obj = subscription(i, "past_due" if kind.endswith("second") else "active")
                evt = event(f"{kind}_{n}", "invoice.paid" if kind == "invoice.paid" else "customer.subscription.updated",
                            obj, created)
                stamp = time.strftime("%Y-%m-%dT%H:%M:%S+00", time.gmtime(created))
                cp.write_row((evt["id"], evt["type"], stamp, False, obj["id"], f"cus_B{i}", json.dumps(evt),
                              "received", stamp, "pending", 0, stamp))
        cur.execute("ANALYZE stripe_events")


def apply_rate(url: str, service_url: str, stripe_url: str, kind: str) -> dict:
    """One `worker --once` on the backlog: the time from its first applied event to its last
    (the process start is not the queue's cost), read from the queue itself."""
    from sqlalchemy import create_engine, text

    backlog(url, kind)
    env = env_for(service_url, STRIPE_API_BASE=stripe_url, STRIPE_MAX_NETWORK_RETRIES="0")
    engine = create_engine(url)
    proc = subprocess.Popen([str(BIN / "flask"), "--app", "wsgi", "worker", "--once", "--batch", "200"], cwd=ROOT,
                            env={**os.environ, **env}, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    out = proc.communicate(timeout=1800)[0]
    assert proc.returncode == 0, out[-2000:]
    with engine.connect() as conn:
        done, first, last = conn.execute(text(
            "SELECT count(*), min(applied_at), max(applied_at) FROM stripe_events WHERE status = 'done'")).one()
        sent, nfirst, nlast = conn.execute(text(
            "SELECT count(*), min(delivered_at), max(delivered_at) FROM newsletter_outbox "
            "WHERE status = 'delivered'")).one()
        conn.execute(text("TRUNCATE newsletter_outbox"))
        conn.commit()
    with engine.connect() as conn:  # as autovacuum would soon after 20,000 changed rows
        conn.execution_options(isolation_level="AUTOCOMMIT").execute(text("ANALYZE stripe_events"))
    engine.dispose()
    assert done == BACKLOG, out[-2000:]
    seconds = (last - first).total_seconds()
    newsletter = sent / (nlast - nfirst).total_seconds() if sent > 1 else None
    return {"events": done, "seconds": seconds, "rate": (done - 1) / seconds, "newsletter_rate": newsletter}


# --- 4. staff search ---------------------------------------------------------------------------

def searches(url: str, service_url: str, members: int, rounds: int) -> dict:
    import requests
    from sqlalchemy import create_engine, text

    engine = create_engine(url)
    with engine.connect() as conn:  # page 2,000 of the active members (50 a page), or the last full one
        active = conn.execute(text("SELECT count(*) FROM memberships WHERE status = 'active'")).scalar()
    engine.dispose()
    deep = max(1, min(2000, active // 50))

    env = env_for(service_url)
    sh(str(BIN / "flask"), "--app", "wsgi", "staff", "create", STAFF_EMAIL, "--role", "admin", env=env,
       input=STAFF_PASSWORD + "\n")
    token = sh(str(BIN / "flask"), "--app", "wsgi", "tokens", "create", "bench-search", "--scope", "members:read",
               env=env).stdout.strip().splitlines()[-1]
    proc, port = serve("wsgi:app", env, 4, 1)
    base = f"http://127.0.0.1:{port}"
    web = requests.Session()
    page = web.get(f"{base}/login").text
    csrf = re.search(r'name="csrf_token" type="hidden" value="([^"]+)"', page).group(1)
    web.post(f"{base}/login", data={"email": STAFF_EMAIL, "password": STAFF_PASSWORD, "csrf_token": csrf})
    target = members // 2 + 12345 % max(members // 2, 1)
    queries = {
        "email prefix": f"/staff?q=bench{target // 10}",
        "exact email": f"/staff?q=bench{target}@example.org",
        "name contains": f"/staff?q=reader {target}",
        f"state, page {deep:,}": f"/staff?status=active&page={deep}",
    }
    times: dict[str, list[float]] = {name: [] for name in queries}
    times["GET /api/v1/members/<id>"] = []
    try:
        for path in queries.values():  # warm up every worker's connections and caches
            for _ in range(8):
                assert web.get(base + path).status_code == 200
        for _ in range(rounds):
            for name, path in queries.items():
                t = time.perf_counter()
                resp = web.get(base + path)
                times[name].append((time.perf_counter() - t) * 1000)
                assert resp.status_code == 200 and "Bench Reader" in resp.text, (name, resp.status_code)
            t = time.perf_counter()
            resp = web.get(f"{base}/api/v1/members/{target}", headers={"Authorization": f"Bearer {token}"})
            times["GET /api/v1/members/<id>"].append((time.perf_counter() - t) * 1000)
            assert resp.status_code == 200
    finally:
        proc.terminate()
        proc.wait(timeout=10)
    return {name: {"median": statistics.median(v), "p95": sorted(v)[int(len(v) * 0.95) - 1]}
            for name, v in times.items()}


# --- 5. the export ----------------------------------------------------------------------------

def export(url: str, service_url: str, members: int) -> dict:
    from sqlalchemy import create_engine, text

    env = env_for(service_url, EXPORT_DIR=tempfile.mkdtemp())
    engine = create_engine(url)
    with engine.begin() as conn:
        staff_id = conn.execute(text("SELECT id FROM accounts WHERE email = :e"), {"e": STAFF_EMAIL}).scalar()
        conn.execute(text("INSERT INTO export_jobs (requested_by, filters, status, rows_done, rows_estimate, created_at)"
                          " VALUES (:s, '{}', 'pending', 0, :n, now())"), {"s": staff_id, "n": members})
    proc = subprocess.Popen([str(BIN / "flask"), "--app", "wsgi", "worker", "--once"], cwd=ROOT,
                            env={**os.environ, **env}, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    samples: list[tuple[str, int]] = []
    while proc.poll() is None:
        try:
            rss = int(re.search(r"VmRSS:\s+(\d+)", Path(f"/proc/{proc.pid}/status").read_text()).group(1))
        except (FileNotFoundError, AttributeError):
            break
        with engine.connect() as conn:
            status = conn.execute(text("SELECT status FROM export_jobs ORDER BY id DESC LIMIT 1")).scalar()
        samples.append((status, rss))
        time.sleep(0.05)
    with engine.connect() as conn:
        job = conn.execute(text("SELECT status, rows_done, started_at, finished_at FROM export_jobs "
                                "ORDER BY id DESC LIMIT 1")).one()
    engine.dispose()
    assert job.status == "done" and job.rows_done == members, (job, proc.stderr.read()[-2000:])
    seconds = (job.finished_at - job.started_at).total_seconds()
    at_start = next((rss for status, rss in samples if status == "running"), samples[0][1])
    peak = max(rss for _, rss in samples)
    # The reference: psql's \copy of the same columns, in the same order, over the same socket.
    query = ("SELECT a.id, a.email, a.name, m.status, m.paid_through, m.cancel_at_period_end, m.level_name, "
             "m.level_amount, m.level_currency, m.level_interval, m.stripe_customer_id, m.newsletter_status, "
             "a.created_at, m.newsletter_opt_in, m.comped_at, m.comped_until, m.comp_reason, a.language "
             "FROM memberships m JOIN accounts a ON a.id = m.account_id WHERE a.role = 'member' "
             "ORDER BY m.created_at DESC, m.account_id DESC")
    host = SERVICE_HOST if Path(SERVICE_HOST).exists() else "127.0.0.1"
    t = time.monotonic()
    sh("psql", "-h", host, "-U", "postgres", "-d", DB_NAME, "-q", "-c",
       f"\\copy ({query}) TO '{tempfile.gettempdir()}/bench-psql-copy.csv' WITH (FORMAT csv, HEADER)")
    psql = time.monotonic() - t
    return {"seconds": seconds, "psql": psql, "ratio": seconds / psql, "rss_growth_mb": (peak - at_start) / 1024}


SECTIONS = ("entitlement", "webhook", "apply", "search", "export")


def verdict(ok: bool) -> str:
    return "met" if ok else "NOT met"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--members", type=int, default=1_000_000)
    parser.add_argument("--seconds", type=int, default=8)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--connections", type=int, default=16)
    parser.add_argument("--searches", type=int, default=40, help="requests per search form")
    parser.add_argument("--only", default=",".join(SECTIONS), help=f"comma-separated subset of {','.join(SECTIONS)}")
    args = parser.parse_args()
    only = [x.strip() for x in args.only.split(",") if x.strip()]
    if unknown := set(only) - set(SECTIONS):
        sys.exit(f"unknown sections: {', '.join(sorted(unknown))}")
    if not shutil.which("wrk"):
        sys.exit("wrk is not installed (make bench installs it: apt-get install wrk)")
    from bench.entitlements import run_entitlements

    print(f"seeding {args.members:,} members in PostgreSQL database {DB_NAME} ...", flush=True)
    url, service_url = prepare(args.members)
    lines: list[str] = []

    def w(line: str = "") -> None:
        lines.append(line)
        print(line, flush=True)

    command = "make bench" + (f' BENCH_ARGS="{" ".join(sys.argv[1:])}"' if sys.argv[1:] else "")
    w(f"{command}: {time.strftime('%Y-%m-%d')}, {args.members:,} members on PostgreSQL (Unix socket), "
      f"gunicorn 4 sync workers, wrk -t2 -c{args.connections} -d{args.seconds}s, {args.rounds} interleaved rounds "
      f"(medians)")
    w(f"{'measure':<62}{'value':>14}   bar")
    acc = None
    if "entitlement" in only:
        ent = run_entitlements(service_url, args.members, args.seconds, args.rounds, args.connections)
        ratio = ent["entitlement"]["rps"] / ent["bare"]["rps"]
        w(f"{'entitlement check / bare Flask route (req/s)':<62}{ratio:>14.2f}   >= 0.60 {verdict(ratio >= 0.6)}")
        w(f"{'   bare route req/s, p99 ms':<62}{ent['bare']['rps']:>9.0f} {ent['bare']['p99']:>4.1f}")
        w(f"{'   entitlement check req/s, p99 ms':<62}{ent['entitlement']['rps']:>9.0f} "
          f"{ent['entitlement']['p99']:>4.1f}")
    if "webhook" in only or "apply" in only:
        acc = accept(url, service_url, args.seconds, args.rounds, args.connections)
    if "webhook" in only:
        ratio = acc["service"]["rps"] / acc["reference"]["rps"]
        w(f"{'webhook acceptance / reference C (req/s)':<62}{ratio:>14.2f}   >= 0.60 {verdict(ratio >= 0.6)}")
        w(f"{'   reference C req/s, p99 ms':<62}{acc['reference']['rps']:>9.0f} {acc['reference']['p99']:>4.1f}")
        w(f"{'   webhook req/s, p99 ms':<62}{acc['service']['rps']:>9.0f} {acc['service']['p99']:>4.1f}")
    if "apply" in only:
        stand_in = StripeStandIn()
        for name, kind in (("subscription events", "subscription"),
                           ("invoice events (Stripe stand-in read)", "invoice.paid")):
            r = apply_rate(url, service_url, stand_in.url, kind)
            w(f"{f'apply rate of {BACKLOG:,} {name}, one worker':<62}{r['rate']:>12.0f}/s   >= 300/s "
              f"{verdict(r['rate'] >= 300)}  ({r['rate'] / acc['reference']['rps']:.2f} x C)")
            if r["newsletter_rate"]:
                w(f"{'   then DAWNS changes delivered (log provider)':<62}{r['newsletter_rate']:>12.0f}/s")
    if "search" in only:
        found = searches(url, service_url, args.members, args.searches)
        ref = found.pop("GET /api/v1/members/<id>")
        w(f"{'GET /api/v1/members/<id> (reference), median / p95 ms':<62}{ref['median']:>7.1f} {ref['p95']:>6.1f}")
        for name, r in found.items():
            ok = r["median"] < 50 and r["p95"] < 100
            w(f"{'staff search, ' + name + ', median / p95 ms':<62}{r['median']:>7.1f} {r['p95']:>6.1f}   "
              f"< 50 / < 100 {verdict(ok)}  ({r['median'] / ref['median']:.1f} x reference)")
    if "export" in only:
        if "search" not in only:
            searches(url, service_url, args.members, 1)  # creates the staff account the export job names
        out = export(url, service_url, args.members)
        w(f"{f'export of {args.members:,} rows / psql copy (s)':<62}{out['ratio']:>14.2f}   <= 3.00 "
          f"{verdict(out['ratio'] <= 3)}  ({out['seconds']:.1f} s / {out['psql']:.1f} s)")
        w(f"{'   worker RSS growth while exporting (MB)':<62}{out['rss_growth_mb']:>14.1f}   < 50 "
          f"{verdict(out['rss_growth_mb'] < 50)}")
    print("\n" + "\n".join(lines))


if __name__ == "__main__":
    main()
