"""Schemathesis against a live server, as an outsider would run it: gunicorn on PostgreSQL,
every operation, every check, at least 200 examples each, all of its phases (examples,
coverage, fuzzing, stateful). It must find nothing."""
from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from service.domain.membership import MembershipStatus as S
from service.demo.localstripe import free_port, wait_for_port

from ..support.factories import make_account
from ..support.staff import api_token

ROOT = Path(__file__).resolve().parents[2]
BIN = Path(sys.executable).parent


@pytest.fixture
def gunicorn(app, database_url):
    if not database_url.startswith("postgresql"):
        pytest.skip("the live fuzzing run is against the deployment: gunicorn on PostgreSQL")
    port = free_port()
    env = {**os.environ, "DATABASE_URL": database_url, "SECRET_KEY": "schemathesis-live", "MAIL_BACKEND": "log",
           "STRIPE_SECRET_KEY": "sk_test_unused", "STRIPE_PRICE_ID": "price_unused",
           "PUBLIC_BASE_URL": f"http://127.0.0.1:{port}", "PAYWALL_JWT_PRIVATE_KEY": app.config["PAYWALL_JWT_PRIVATE_KEY"],
           "RATELIMIT_API": "100000 per minute"}
    proc = subprocess.Popen([str(BIN / "gunicorn"), "-w", "2", "-b", f"127.0.0.1:{port}", "wsgi:app"], cwd=ROOT,
                            env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    try:
        wait_for_port(port, proc)
        yield f"http://127.0.0.1:{port}"
    finally:
        proc.terminate()
        _, err = proc.communicate(timeout=20)
        assert b"Traceback" not in err, err.decode()[-3000:]


def test_schemathesis_run_with_every_check_finds_nothing(app, gunicorn):
    from .organisation_rows import make_organisation

    for i, status in enumerate(S):
        make_account(app, email=f"s{i}@example.org", name=f"Schema {i}", status=status)
    make_organisation(app, seats=[make_account(app, email="seat@example.org")])
    token = api_token(app, name="schemathesis", scopes=("entitlements:read", "members:read", "organisations:read"))
    result = subprocess.run(
        [str(BIN / "st"), "run", f"{gunicorn}/api/v1/openapi.json", "--checks", "all", "--max-examples", "200",
         "--header", f"Authorization: Bearer {token}", "--seed", "1", "--no-color"],
        cwd=ROOT, capture_output=True, text=True, timeout=900)
    failures = result.stdout.find("FAILURES")
    report = (result.stdout[failures:failures + 3000] + "\n...\n" if failures >= 0 else "") + result.stdout[-2500:]
    print(report)  # what it checked, in the CI log
    assert result.returncode == 0, report
    assert "Selected: 5/5" in result.stdout and "Tested: 5" in result.stdout
