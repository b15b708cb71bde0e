"""Benchmark: the paywall's entitlement check against a bare Flask JSON route.

Seeds 100,000 members in PostgreSQL, serves the service and the bare route with the same
gunicorn settings (default: 4 sync workers, as deployed), loads each with wrk (random members,
the real bearer token) in the same run, and prints requests per second, p50 and p99 of both
and the ratio (target: at least 0.6).

    make bench            # or: .venv/bin/python bench/entitlements.py --members 100000
"""
from __future__ import annotations

import argparse
import io
import os
import re
import shutil
import socket
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

ADMIN_URL = os.environ.get("BENCH_ADMIN_URL", "postgresql+psycopg://postgres@127.0.0.1:5432/postgres")
# The service reaches PostgreSQL as a co-located deployment would: over the Unix socket.
SERVICE_HOST = os.environ.get("BENCH_PG_SOCKET", "/var/run/postgresql")
DB_NAME = "dawns_bench"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def fresh_database() -> str:
    """DB_NAME dropped, created and migrated to head; its URL."""
    from sqlalchemy import create_engine, text

    admin = create_engine(ADMIN_URL, isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.execute(text(f"DROP DATABASE IF EXISTS {DB_NAME} WITH (FORCE)"))
        conn.execute(text(f"CREATE DATABASE {DB_NAME}"))
    admin.dispose()
    url = ADMIN_URL.rsplit("/", 1)[0] + f"/{DB_NAME}"
    from service.migrate import upgrade

    upgrade(url)
    return url


def prepare_database(members: int) -> str:
    url = fresh_database()
    import psycopg

    raw = url.replace("postgresql+psycopg://", "postgresql://")
    statuses = ["active", "active", "active", "past_due", "canceled", "pending", "lapsed", "comped"]
    with psycopg.connect(raw) as conn, conn.cursor() as cur:
        with cur.copy("COPY accounts (id, email, name, password_hash, role, created_at, updated_at) FROM STDIN") as cp:
            for i in range(1, members + 1):
                cp.write_row((i, f"bench{i}@example.org", f"Bench Reader {i}", "x", "member",
                              "2026-01-01T00:00:00+00", "2026-01-01T00:00:00+00"))
        with cur.copy("COPY memberships (account_id, status, paid_through, cancel_at_period_end, newsletter_opt_in, "
                      "newsletter_desired, newsletter_status, status_changed_at, created_at, updated_at) FROM STDIN") as cp:
            for i in range(1, members + 1):
                cp.write_row((i, statuses[i % len(statuses)], "2027-01-01T00:00:00+00", False, True, "none",
                              "not_subscribed", "2026-01-01T00:00:00+00", "2026-01-01T00:00:00+00",
                              "2026-01-01T00:00:00+00"))
        cur.execute("SELECT setval('accounts_id_seq', %s)", (members,))
    # Settle the fresh tables now (visibility map, statistics), so that autovacuum does not
    # start in the middle of a measurement.
    with psycopg.connect(raw, autocommit=True) as conn:
        conn.execute("VACUUM (ANALYZE)")
        conn.execute("CHECKPOINT")
    return url


def make_token(url: str) -> str:
    env = {**os.environ, **service_env(url)}
    out = subprocess.run([sys.executable, "-m", "flask", "--app", "wsgi", "tokens", "create", "bench"],
                         cwd=ROOT, env=env, capture_output=True, text=True, check=True)
    return out.stdout.strip().splitlines()[-1]


def service_env(url: str) -> dict[str, str]:
    if SERVICE_HOST and Path(SERVICE_HOST).exists():
        url = f"postgresql+psycopg://postgres@/{DB_NAME}?host={SERVICE_HOST}"
    return {
        "DATABASE_URL": url, "SECRET_KEY": "bench-secret", "STRIPE_SECRET_KEY": "sk_test_bench",
        "RATELIMIT_API": "100000000 per minute", "NEWSLETTER_PROVIDER": "log",
    }


def serve(module: str, env_extra: dict[str, str], workers: int, threads: int) -> tuple[subprocess.Popen, int]:
    port = free_port()
    env = {**os.environ, **env_extra}
    worker = ["--worker-class", "gthread", "--threads", str(threads)] if threads > 1 else ["--worker-class", "sync"]
    proc = subprocess.Popen(
        [sys.executable, "-m", "gunicorn", "--workers", str(workers), *worker,
         "--bind", f"127.0.0.1:{port}", "--log-level", "warning", module],
        cwd=ROOT, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.5):
                return proc, port
        except OSError:
            time.sleep(0.1)
    proc.kill()
    raise RuntimeError(f"{module} did not start")


def load(port: int, seconds: int, connections: int, token: str, members: int) -> dict[str, float]:
    env = {**os.environ, "BENCH_TOKEN": token, "BENCH_MEMBERS": str(members)}
    out = subprocess.run(
        ["wrk", "-t2", f"-c{connections}", f"-d{seconds}s", "--latency", "-s",
         str(ROOT / "bench" / "random_member.lua"), f"http://127.0.0.1:{port}"],
        env=env, capture_output=True, text=True, check=True,
    ).stdout
    rps = float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1))
    non2xx = re.search(r"Non-2xx or 3xx responses:\s+(\d+)", out)

    def pct(p: str) -> float:
        m = re.search(rf"^\s+{p}%\s+([\d.]+)(us|ms|s)\s*$", out, re.M)
        value, unit = float(m.group(1)), m.group(2)
        return value / 1000 if unit == "us" else value * 1000 if unit == "s" else value

    return {"rps": rps, "p50": pct("50"), "p99": pct("99"), "errors": int(non2xx.group(1)) if non2xx else 0}


def run_entitlements(service_url: str, members: int, seconds: int, rounds: int, connections: int,
                     workers: int = 4, threads: int = 1) -> dict:
    """The entitlement check and the bare route, loaded in interleaved rounds; medians."""
    from bench.run import env_for

    env = env_for(service_url)
    token = subprocess.run([sys.executable, "-m", "flask", "--app", "wsgi", "tokens", "create", "bench-paywall"],
                           cwd=ROOT, env={**os.environ, **env}, capture_output=True, text=True,
                           check=True).stdout.strip().splitlines()[-1]
    results: dict[str, list[dict[str, float]]] = {"bare": [], "entitlement": []}
    servers = {"bare": serve("bench.bare_app:app", {}, workers, threads),
               "entitlement": serve("wsgi:app", env, workers, threads)}
    try:
        for name, (_, port) in servers.items():  # warm-up
            load(port, 2, connections, token, members)
        for _ in range(rounds):  # interleaved, so both see the same machine
            for name, (_, port) in servers.items():
                results[name].append(load(port, seconds, connections, token, members))
    finally:
        for proc, _ in servers.values():
            proc.terminate()
            proc.wait(timeout=10)
    return {name: {k: sorted(x[k] for x in r)[len(r) // 2] for k in ("rps", "p50", "p99", "errors")}
            for name, r in results.items()}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--members", type=int, default=100_000)
    parser.add_argument("--seconds", type=int, default=10)
    parser.add_argument("--connections", type=int, default=16)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--workers", type=int, default=4)
    parser.add_argument("--threads", type=int, default=1, help="1: gunicorn's default sync workers")
    args = parser.parse_args()
    if not shutil.which("wrk"):
        sys.exit("wrk is not installed (make bench installs it: apt-get install wrk)")

    print(f"seeding {args.members:,} members in PostgreSQL database {DB_NAME} ...", flush=True)
    url = prepare_database(args.members)
    token = make_token(url)
    results: dict[str, list[dict[str, float]]] = {"bare": [], "entitlement": []}
    servers = {
        "bare": serve("bench.bare_app:app", {}, args.workers, args.threads),
        "entitlement": serve("wsgi:app", service_env(url), args.workers, args.threads),
    }
    try:
        for name, (_, port) in servers.items():  # warm-up
            load(port, 2, args.connections, token, args.members)
        for _ in range(args.rounds):  # interleaved, so both see the same machine
            for name, (_, port) in servers.items():
                results[name].append(load(port, args.seconds, args.connections, token, args.members))
    finally:
        for proc, _ in servers.values():
            proc.terminate()
            proc.wait(timeout=10)

    def median(values: list[float]) -> float:
        s = sorted(values)
        return s[len(s) // 2]

    out = io.StringIO()
    kind = f"gthread {args.workers}x{args.threads}" if args.threads > 1 else f"sync workers x{args.workers}"
    print(f"\ngunicorn {kind}, wrk -t2 -c{args.connections} -d{args.seconds}s, "
          f"{args.rounds} interleaved rounds, medians; {args.members:,} members on PostgreSQL", file=out)
    print(f"{'route':<28}{'req/s':>10}{'p50 ms':>10}{'p99 ms':>10}{'non-2xx':>10}", file=out)
    summary = {}
    for name, label in (("bare", "bare Flask JSON route"), ("entitlement", "GET /api/v1/entitlements")):
        r = results[name]
        summary[name] = {k: median([x[k] for x in r]) for k in ("rps", "p50", "p99", "errors")}
        s = summary[name]
        print(f"{label:<28}{s['rps']:>10.0f}{s['p50']:>10.2f}{s['p99']:>10.2f}{s['errors']:>10.0f}", file=out)
    ratio = summary["entitlement"]["rps"] / summary["bare"]["rps"]
    print(f"ratio (entitlement / bare, req/s): {ratio:.2f}  (target >= 0.60: {'met' if ratio >= 0.6 else 'NOT met'})",
          file=out)
    print(out.getvalue())


if __name__ == "__main__":
    main()
