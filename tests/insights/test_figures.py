"""The insights' figures on a hand-built history with known answers (SPEC "Insight and
operations"): members by state, MRR with a yearly level, new and cancelled, monthly churn,
failed-payment recovery, DAWNS reach and the level mix; with the level and individual /
organisation filters. On both databases."""
from __future__ import annotations

from datetime import datetime, timezone

import pytest

from service.db import get_session
from service.membership.insights import Filters, compute
from service.models import MembershipHistory

from ..support.factories import make_account
from ..support.organisations import make_org


def at(month, day, year=2026):
    return datetime(year, month, day, 12, tzinfo=timezone.utc)


RANGE = Filters(start=datetime(2026, 1, 1, tzinfo=timezone.utc), end=datetime(2026, 4, 15, tzinfo=timezone.utc))


@pytest.fixture
def history(app):
    """A: $5 a month from 10 Jan, DAWNS, cancels 5 Mar. B: $60 a year (=$5 a month) since 15 Dec,
    no DAWNS, past due 10 Feb, active again 14 Feb. C: gives $10 a month from 2 Feb, DAWNS, past
    due 3 Mar, lapsed 20 Mar. D: an organisation's seat from 1 Jan 00:00, DAWNS."""
    a, b, c, d = (make_account(app, email=f"{x}@example.org") for x in "abcd")
    org = make_org(app, admin_id=d)
    rows = [
        (a, at(1, 10), "pending", "active", True, "Member", 500, None, True),
        (a, at(3, 5), "active", "canceled", False, "Member", 0, None, True),
        (b, at(12, 15, 2025), "pending", "active", True, "Member, yearly", 500, None, False),
        (b, at(2, 10), "active", "past_due", True, "Member, yearly", 500, None, False),
        (b, at(2, 14), "past_due", "active", True, "Member, yearly", 500, None, False),
        (c, at(2, 2), "pending", "active", True, "Give more", 1000, None, True),
        (c, at(3, 3), "active", "past_due", True, "Give more", 1000, None, True),
        (c, at(3, 20), "past_due", "lapsed", False, "Give more", 0, None, True),
        (d, datetime(2026, 1, 1, tzinfo=timezone.utc), "pending", "organisation", True, "Organisation seat", 0, org,
         True),
    ]
    with app.app_context():
        s = get_session()
        for account, when, before, after, entitled, level, value, organisation, dawns in rows:
            s.add(MembershipHistory(account_id=account, at=when, from_status=before, to_status=after,
                                    entitled=entitled, level_name=level, monthly_value=value, currency="usd",
                                    organisation_id=organisation, newsletter=dawns, source="stripe event"))
        s.commit()
    return app


def figures(app, **filters):
    with app.app_context():
        return compute(get_session(), Filters(**{**RANGE.__dict__, **filters}))


def test_members_by_state_mrr_and_reach_at_each_months_end(history):
    f = figures(history)
    assert [p.month for p in f.periods] == [1, 2, 3, 4]
    assert f.by_state["active"] == [2, 3, 1, 1]  # A, B | A, B, C | B | B
    assert f.by_state["organisation"] == [1, 1, 1, 1]
    assert f.by_state["canceled"] == [0, 0, 1, 1] and f.by_state["lapsed"] == [0, 0, 1, 1]
    assert f.by_state["past_due"] == [0, 0, 0, 0]
    assert f.entitled == [3, 4, 2, 2]
    assert f.mrr == [1000, 2000, 500, 500]  # the yearly $60 counts $5 a month
    assert f.enrolled == [2, 3, 1, 1]
    assert f.reach == [pytest.approx(2 / 3), 0.75, 0.5, 0.5]


def test_new_cancelled_and_monthly_churn(history):
    f = figures(history)
    assert f.new == [2, 1, 0, 0]  # A and D in January, C in February; B's return is not new
    assert f.cancelled == [0, 0, 2, 0]  # A canceled, C lapsed
    assert f.entitled_at_start == [2, 3, 4, 2]  # B and D on 1 January (D from its first moment)
    assert f.churn == [0.0, 0.0, 0.5, 0.0]


def test_failed_payment_recovery(history):
    f = figures(history)
    assert (f.recovery_episodes, f.recovered) == (2, 1)  # B came back, C lapsed
    assert f.recovery_rate == 0.5 and f.recovery_median_days == 4.0


def test_level_mix_at_the_end_of_the_range(history, app):
    assert figures(history).level_mix == [("Member, yearly", 1, 500), ("Organisation seat", 1, 0)]
    # A seat or a comp carries no level of its own: counted as what it is.
    with app.app_context():
        s = get_session()
        s.query(MembershipHistory).filter(MembershipHistory.organisation_id.is_not(None)).update({"level_name": None})
        s.commit()
    assert figures(history).level_mix == [("Member, yearly", 1, 500), ("Organisation seat", 1, 0)]
    assert figures(history, level="Organisation seat").entitled == [1, 1, 1, 1]


def test_filters_by_level_and_by_organisation(history):
    member = figures(history, level="Member")
    assert member.entitled == [1, 1, 0, 0] and member.mrr == [500, 500, 0, 0]
    assert member.cancelled == [0, 0, 1, 0] and member.new == [1, 0, 0, 0]
    org = figures(history, who="organisation")
    assert org.entitled == [1, 1, 1, 1] and org.mrr == [0, 0, 0, 0] and org.by_state["active"] == [0, 0, 0, 0]
    individual = figures(history, who="individual")
    assert individual.entitled == [2, 3, 1, 1] and individual.recovery_episodes == 2


def test_by_week(history):
    f = figures(history, by="week", start=datetime(2026, 3, 1, tzinfo=timezone.utc),
                end=datetime(2026, 3, 25, tzinfo=timezone.utc))
    assert [p.isoformat()[:10] for p in f.periods] == ["2026-02-23", "2026-03-02", "2026-03-09", "2026-03-16",
                                                       "2026-03-23"]
    assert f.cancelled == [0, 1, 0, 1, 0]  # A on Thursday 5 March, C on Friday 20 March
    assert f.entitled[-1] == 2
