"""The embedded default as a newcomer runs it: `flask --app wsgi demo` in its own process."""
from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
from pathlib import Path

import requests

from service.demo.localstripe import free_port, wait_for_port

ROOT = Path(__file__).resolve().parent.parent
FLASK = str(Path(sys.executable).parent / "flask")


def _env(tmp_path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("STRIPE_", "PUBLIC_BASE_URL", "DEMO_"))}
    return {**env, "DATABASE_URL": f"sqlite:///{tmp_path / 'demo.db'}", "SECRET_KEY": "make-run-test"}


def test_demo_refuses_an_unmigrated_database_with_a_clear_message(tmp_path):
    result = subprocess.run([FLASK, "--app", "wsgi", "demo", "--port", str(free_port())], cwd=ROOT,
                            env=_env(tmp_path), capture_output=True, text=True, timeout=60)
    assert result.returncode == 1
    assert "run `flask --app wsgi db upgrade` first" in result.stderr and "Traceback" not in result.stderr


def test_demo_on_any_port_links_to_that_port_and_sigterm_stops_localstripe_too(tmp_path):
    env = _env(tmp_path)
    subprocess.run([FLASK, "--app", "wsgi", "db", "upgrade"], cwd=ROOT, env=env, check=True, capture_output=True)
    port = free_port()
    proc = subprocess.Popen([FLASK, "--app", "wsgi", "demo", "--port", str(port)], cwd=ROOT, env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    lines: list[str] = []
    try:
        for line in proc.stdout:  # type: ignore[union-attr]
            lines.append(line)
            if "Press Ctrl-C to stop." in line:
                break
        output = "".join(lines)
        assert f"Membership service: http://127.0.0.1:{port}/" in output
        assert re.search(r"Demo staff login:\s+staff@example.org / \S+", output)
        child = int(re.search(r"running at http://127.0.0.1:\d+, pid (\d+)", output).group(1))
        wait_for_port(port, proc)
        web = requests.Session()
        page = web.get(f"http://127.0.0.1:{port}/join", timeout=10).text
        assert "Member: $5 a month" in page and "Member, yearly: $50 a year" in page
        token = re.search(r'name="csrf_token" type="hidden" value="([^"]+)"', page).group(1)
        resp = web.post(f"http://127.0.0.1:{port}/join", allow_redirects=False, timeout=30, data={
            "csrf_token": token, "name": "New Reader", "email": "new@example.org", "password": "a long password 1",
            "newsletter": "y", "level": "1"})
        assert resp.status_code == 303
        assert resp.headers["Location"].startswith(f"http://127.0.0.1:{port}/demo/checkout/cs_demo_")
        assert (ROOT / "instance" / "demo-stripe.env").exists()
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.wait(timeout=30)
        proc.stdout.close()  # type: ignore[union-attr]
    assert proc.returncode == 0
    assert not Path(f"/proc/{child}").exists() or "zombie" in Path(f"/proc/{child}/status").read_text().lower()
    assert not (ROOT / "instance" / "demo-stripe.env").exists()
