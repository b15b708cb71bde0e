"""The README's two commands are what CI runs."""
from __future__ import annotations

import re
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def test_ci_runs_make_test_with_postgresql():
    ci = (ROOT / ".ci" / "run").read_text()
    assert re.search(r"^make test$", ci, re.M)
    assert "TEST_DATABASE_URL" in ci


def test_readme_documents_the_two_commands_and_the_makefile_has_them():
    readme = (ROOT / "README.md").read_text()
    assert "make run" in readme and "make test" in readme
    makefile = (ROOT / "Makefile").read_text()
    run = re.search(r"^run:.*\n((?:\t.*\n)+)", makefile, re.M).group(0)
    assert "migrate" in run and "demo" in run
    assert re.search(r"^test: \$\(STAMP\)( \$\(COMPILED\))?\n\t\$\(BIN\)/lint-imports.*\n\t\$\(BIN\)/python -m pytest", makefile, re.M)


def test_the_layers_hold():
    """`make test` runs the import-linter contract; so does this test, for a plain pytest run."""
    import subprocess
    import sys

    result = subprocess.run([str(Path(sys.executable).parent / "lint-imports"), "--no-cache"], cwd=ROOT,
                            capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stdout[-3000:]
    assert "Contracts: 2 kept, 0 broken." in result.stdout


def test_env_example_documents_every_contract_variable():
    env = (ROOT / ".env.example").read_text()
    for name in ["SECRET_KEY", "DATABASE_URL", "PUBLIC_BASE_URL", "STRIPE_SECRET_KEY", "STRIPE_WEBHOOK_SECRET",
                 "STRIPE_PRICE_ID", "STRIPE_API_BASE", "STRIPE_API_VERSION", "NEWSLETTER_PROVIDER",
                 "MAILCHIMP_API_KEY", "MAILCHIMP_SERVER_PREFIX", "MAILCHIMP_LIST_ID", "MAILCHIMP_API_BASE",
                 "NEWSLETTER_ON_LAPSE", "MAIL_BACKEND", "SMTP_HOST", "STRIPE_PRODUCT_ID", "PAST_DUE_GRACE_DAYS"]:
        assert re.search(rf"^# .*\n(?:# .*\n)*{name}=", env, re.M) or re.search(rf"^{name}=", env, re.M), name
