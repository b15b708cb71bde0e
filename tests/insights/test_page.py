"""`/staff/insights`: for staff and admins only; SVG charts with a title and their data tables;
a CSV per series with the same figures; bad parameters are reported, not a stack trace; and the
demo seed that gives `make run` real-looking charts."""
from __future__ import annotations

import csv
import html
import io
import re
from datetime import datetime, timedelta, timezone

import pytest
from sqlalchemy import func, select

from service.db import get_session
from service.models import Account, MembershipHistory

from ..support.staff import client_as
from .test_figures import history  # noqa: F401  (the hand-built history)

QUERY = "from=2026-01&to=2026-04&by=month"


def test_only_staff_see_insights(app):
    assert client_as(app, "anonymous").get("/staff/insights").status_code == 302
    member = client_as(app, "member")
    assert member.get("/staff/insights").status_code == 403
    assert member.get("/staff/insights/mrr.csv").status_code == 403
    assert client_as(app, "staff").get("/staff/insights").status_code == 200


def test_each_chart_is_an_svg_with_a_title_beside_its_table(history):  # noqa: F811
    html = client_as(history, "staff").get(f"/staff/insights?{QUERY}").get_data(as_text=True)
    charts = re.findall(r'<svg class="chart" id="([^"]+)"[^>]*role="img"', html)
    assert charts == ["chart-members", "chart-mrr", "chart-movement", "chart-churn", "chart-reach", "chart-levels"]
    for title in ("Members by state", "Monthly recurring revenue", "New and cancelled members", "Churn",
                  "DAWNS Digest reach", "Level mix"):
        assert f"-title\">{title}</title>" in html
    assert "<caption>Monthly recurring revenue</caption>" in html
    assert "<th scope=\"row\">Mar 2026</th><td>$5</td>" in html  # B's $60 a year
    assert "<script" not in html


def test_the_csv_of_a_series_has_the_tables_figures(history):  # noqa: F811
    staff = client_as(history, "staff")
    resp = staff.get(f"/staff/insights/churn.csv?{QUERY}")
    assert resp.status_code == 200 and resp.mimetype == "text/csv"
    assert 'filename="dawns-churn-2026-01-to-2026-04.csv"' in resp.headers["Content-Disposition"]
    # Plain numbers for a spreadsheet: periods by their first day, the units in the header.
    assert list(csv.reader(io.StringIO(resp.get_data(as_text=True)))) == [
        ["period_start", "cancelled", "entitled_at_start", "churn_percent"], ["2026-01-01", "0", "2", "0.00"],
        ["2026-02-01", "0", "3", "0.00"], ["2026-03-01", "2", "4", "50.00"], ["2026-04-01", "0", "2", "0.00"]]
    mrr = staff.get(f"/staff/insights/mrr.csv?{QUERY}").get_data(as_text=True)
    assert mrr.splitlines() == ["period_start,mrr_USD", "2026-01-01,10.00", "2026-02-01,20.00", "2026-03-01,5.00",
                                "2026-04-01,5.00"]
    recovery = staff.get(f"/staff/insights/recovery.csv?{QUERY}").get_data(as_text=True)
    assert recovery.splitlines()[1] == "2,1,50.00,4.0"
    organisation = staff.get(f"/staff/insights/members.csv?{QUERY}&who=organisation").get_data(as_text=True)
    assert organisation.splitlines()[1:] == ["2026-01-01,1", "2026-02-01,1", "2026-03-01,1", "2026-04-01,1"]
    assert staff.get("/staff/insights/nothing.csv").status_code == 404
    bad = staff.get("/staff/insights/mrr.csv?by=year")
    assert bad.status_code == 400 and "by month or by week" in bad.get_data(as_text=True)


def test_a_level_name_is_never_a_formula_in_the_csv(app):
    account = client_as(app, "member")  # noqa: F841
    with app.app_context():
        s = get_session()
        member = s.scalars(select(Account.id).where(Account.email == "member-user@example.org")).one()
        s.add(MembershipHistory(account_id=member, at=datetime.now(timezone.utc) - timedelta(days=3),
                                from_status="pending", to_status="active", entitled=True, level_name="=HYPERLINK(1)",
                                monthly_value=500, currency="usd", newsletter=False, source="stripe event"))
        s.commit()
    text = client_as(app, "staff").get("/staff/insights/levels.csv").get_data(as_text=True)
    assert "'=HYPERLINK(1),1,5.00" in text


@pytest.mark.parametrize("query, message", [("from=2026-13", "is not a month"), ("by=year", "by month or by week"),
                                            ("from=2026-05&to=2026-01", "must end after it starts"),
                                            ("who=robots", "individuals or organisations"),
                                            ("from=1900-01", "at most ten years back"),
                                            ("from=2999-01&to=2999-06", "starts in the future"),
                                            ("to=9999-12", "Members by state"),
                                            ("level=Platinum", "No member's history has the level")])
def test_bad_parameters_are_reported_and_the_defaults_used(app, query, message):
    resp = client_as(app, "staff").get(f"/staff/insights?{query}")
    assert resp.status_code == 200 and message in html.unescape(resp.get_data(as_text=True))


def test_the_demo_seed_makes_a_believable_history_and_refuses_production(app):
    from service.demo.seed import DOMAIN, SeedRefused, seed
    from service.membership.insights import Filters, compute

    with app.app_context():
        s = get_session()
        with pytest.raises(SeedRefused):
            seed(s, 10, public_base_url="https://members.example.org")
        assert s.scalar(select(func.count(Account.id))) == 0
        done = seed(s, 120, public_base_url="http://127.0.0.1:5000")
        assert done.members == 120 and done.history_rows >= 120
        assert seed(s, 120, public_base_url="http://127.0.0.1:5000").members == 0  # again: nothing added
        assert s.scalar(select(func.count(Account.id)).where(Account.email.like(f"%@{DOMAIN}"))) == 120
        now = datetime.now(timezone.utc)
        f = compute(s, Filters(start=now - timedelta(days=540), end=now))
    assert len(f.periods) >= 18
    assert f.entitled[-1] > f.entitled[0] > 0  # it grew
    assert sum(f.new) > 0 and sum(f.cancelled) > 0 and f.mrr[-1] > 0
    assert f.recovery_episodes > 0 and f.level_mix and 0 < (f.reach[-1] or 0) <= 1
