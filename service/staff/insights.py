"""`/staff/insights`: the membership as a whole, for staff and admins (SPEC "Insight and
operations"). Charts are server-rendered SVG, each with its data table and a CSV download;
the figures come from `membership.insights` (SQL aggregates over the membership history)."""
from __future__ import annotations

import csv
import io
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone

from flask import Response, abort, render_template, request, url_for

from ..db import get_session, utcnow
from ..domain.money import format_amount
from ..membership import insights
from . import charts
from .routes import bp, staff_required

SERIES = ("members", "mrr", "movement", "churn", "recovery", "reach", "levels")


@dataclass(frozen=True)
class Chosen:
    filters: insights.Filters
    start: str  # YYYY-MM, as the form shows them
    end: str
    errors: tuple[str, ...] = ()


def _month(text: str | None, fallback: datetime, *, last: bool = False) -> tuple[datetime, str | None]:
    if not text:
        return fallback, None
    try:
        value = datetime.strptime(text.strip(), "%Y-%m").replace(tzinfo=timezone.utc)
    except ValueError:
        return fallback, f"{text!r} is not a month: use YYYY-MM."
    if last:  # the end of that month (or now, for the current month or later)
        value = utcnow() if value > utcnow() else min(insights.month_start(value + timedelta(days=32)), utcnow())
    return value, None


def chosen(args) -> Chosen:
    """The range (12 months by default), granularity and filters from the query string; a bad
    value is reported and its default used."""
    now = utcnow()
    default = insights.Filters.default(now)
    start, e1 = _month(args.get("from"), default.start)
    end, e2 = _month(args.get("to"), now, last=True)
    errors = [e for e in (e1, e2) if e]
    if start >= now:
        errors.append("The range starts in the future.")
        start = default.start
    earliest = insights.month_start(now - timedelta(days=366 * 10))
    if start < earliest:
        errors.append("The range starts at most ten years back.")
        start = earliest
    if end <= start:
        errors.append("The range must end after it starts.")
        start, end = default.start, now
    by = args.get("by", insights.MONTH)
    if by not in (insights.MONTH, insights.WEEK):
        errors.append("Show by month or by week.")
        by = insights.MONTH
    if by == insights.WEEK and (end - start).days > 3 * 366:
        errors.append("By week, the range is at most three years.")
        by = insights.MONTH
    who = args.get("who", insights.ALL)
    if who not in (insights.ALL, insights.INDIVIDUAL, insights.ORGANISATION):
        errors.append("Choose all members, individuals or organisations.")
        who = insights.ALL
    level = (args.get("level") or "").strip()[:100] or None
    return Chosen(insights.Filters(start=start, end=end, by=by, level=level, who=who),
                  start.strftime("%Y-%m"), (end - timedelta(seconds=1)).strftime("%Y-%m"), tuple(errors))


def _label(at: datetime, by: str) -> str:
    return at.strftime("%b %Y") if by == insights.MONTH else at.strftime("%d %b %Y")


def _percent(value: float | None) -> str:
    return "" if value is None else f"{value * 100:.1f}%"


def tables(data: insights.Insights, by: str) -> dict[str, tuple[list[str], list[list[str]]]]:
    """Each series as (header, rows): the page's data tables and the CSV downloads."""
    labels = [_label(p, by) for p in data.periods]
    states = [s for s, values in data.by_state.items() if any(values)]
    money = lambda cents: format_amount(cents, data.currency)  # noqa: E731
    return {
        "members": (["Period", *states], [[labels[i], *[str(data.by_state[s][i]) for s in states]]
                                          for i in range(len(labels))]),
        "mrr": (["Period", f"MRR ({data.currency.upper()})"], [[labels[i], money(v)] for i, v in enumerate(data.mrr)]),
        "movement": (["Period", "New", "Cancelled"], [[labels[i], str(data.new[i]), str(data.cancelled[i])]
                                                       for i in range(len(labels))]),
        "churn": (["Period", "Cancelled", "Entitled at start", "Churn"],
                  [[labels[i], str(data.cancelled[i]), str(data.entitled_at_start[i]), _percent(data.churn[i])]
                   for i in range(len(labels))]),
        "recovery": (["Past-due episodes", "Recovered", "Recovery rate", "Median days to recover"],
                     [[str(data.recovery_episodes), str(data.recovered), _percent(data.recovery_rate),
                       "" if data.recovery_median_days is None else f"{data.recovery_median_days:g}"]]),
        "reach": (["Period", "Enrolled in DAWNS", "Entitled", "Reach"],
                  [[labels[i], str(data.enrolled[i]), str(data.entitled[i]), _percent(data.reach[i])]
                   for i in range(len(labels))]),
        "levels": (["Level", "Members", f"MRR ({data.currency.upper()})"],
                   [[name or "(none)", str(count), money(mrr)] for name, count, mrr in data.level_mix]),
    }


def _charts(data: insights.Insights, by: str) -> dict[str, object]:
    labels = [p.strftime("%b %y") if by == insights.MONTH else p.strftime("%d %b %y") for p in data.periods]
    money = lambda v: format_amount(int(v), data.currency)  # noqa: E731
    states = [charts.Series(s, values) for s, values in data.by_state.items() if any(values)]
    percent = lambda v: f"{v * 100:g}%"  # noqa: E731
    return {
        "members": (charts.line_chart("chart-members", "Members by state", "Members in each state at the end of "
                                      "each period.", labels, states), states),
        "mrr": (charts.line_chart("chart-mrr", "Monthly recurring revenue", "What entitled members pay per month "
                                  "(a yearly amount / 12) at the end of each period.", labels,
                                  [charts.Series("MRR", data.mrr)], fmt=money), None),
        "movement": (charts.bar_chart("chart-movement", "New and cancelled members", "Members who became entitled "
                                      "and members whose membership ended, in each period.", labels,
                                      [charts.Series("New", data.new), charts.Series("Cancelled", data.cancelled)]),
                     [charts.Series("New", data.new), charts.Series("Cancelled", data.cancelled)]),
        "churn": (charts.line_chart("chart-churn", "Churn", "Members whose membership ended during the period, as a "
                                    "share of the members entitled at its start.", labels,
                                    [charts.Series("Churn", data.churn)], fmt=percent, whole=False,
                                    top=charts.nice_top(max([c for c in data.churn if c is not None] or [0])))
                  , None),
        "reach": (charts.line_chart("chart-reach", "DAWNS Digest reach", "Entitled members enrolled in DAWNS Digest, "
                                    "as a share of entitled members.", labels, [charts.Series("Reach", data.reach)],
                                    fmt=percent, top=1.0, whole=False), None),
        "levels": (charts.bar_chart("chart-levels", "Level mix", "Entitled members by level at the end of the "
                                    "range.", [name or "(none)" for name, _, _ in data.level_mix],
                                    [charts.Series("Members", [c for _, c, _ in data.level_mix])]), None),
    }


def _level_known(choice: Chosen, levels: list[str]) -> Chosen:
    if choice.filters.level and choice.filters.level not in levels:
        return Chosen(choice.filters, choice.start, choice.end,
                      (*choice.errors, f"No member's history has the level {choice.filters.level!r}."))
    return choice


def csv_tables(data: insights.Insights) -> dict[str, tuple[list[str], list[list[object]]]]:
    """The series for spreadsheets: plain numbers (money in the currency's units, shares as
    percentages), periods as their first day (YYYY-MM-DD), the units in the headers."""
    days = [p.date().isoformat() for p in data.periods]
    cur = data.currency.upper()
    states = [s for s, values in data.by_state.items() if any(values)]
    money = lambda cents: f"{cents / 100:.2f}"  # noqa: E731
    share = lambda v: "" if v is None else f"{v * 100:.2f}"  # noqa: E731
    n = range(len(days))
    return {
        "members": (["period_start", *states], [[days[i], *[data.by_state[s][i] for s in states]] for i in n]),
        "mrr": (["period_start", f"mrr_{cur}"], [[days[i], money(v)] for i, v in enumerate(data.mrr)]),
        "movement": (["period_start", "new", "cancelled"], [[days[i], data.new[i], data.cancelled[i]] for i in n]),
        "churn": (["period_start", "cancelled", "entitled_at_start", "churn_percent"],
                  [[days[i], data.cancelled[i], data.entitled_at_start[i], share(data.churn[i])] for i in n]),
        "recovery": (["past_due_episodes", "recovered", "recovery_percent", "median_days_to_recover"],
                     [[data.recovery_episodes, data.recovered, share(data.recovery_rate),
                       "" if data.recovery_median_days is None else data.recovery_median_days]]),
        "reach": (["period_start", "enrolled_in_dawns", "entitled", "reach_percent"],
                  [[days[i], data.enrolled[i], data.entitled[i], share(data.reach[i])] for i in n]),
        "levels": (["level", "members", f"mrr_{cur}"], [[name, count, money(mrr)] for name, count, mrr in data.level_mix]),
    }


@bp.get("/insights")
@staff_required
def insights_page():
    session = get_session()
    levels = insights.levels(session)
    choice = _level_known(chosen(request.args), levels)
    data = insights.compute(session, choice.filters)
    return render_template("staff/insights.html", choice=choice, data=data, tables=tables(data, choice.filters.by),
                           charts=_charts(data, choice.filters.by), legend=charts.legend,
                           levels=levels, csv_url=_csv_url)


def _csv_url(series: str) -> str:
    args = {k: v for k, v in request.args.items() if k in ("from", "to", "by", "level", "who")}
    return url_for("staff.insights_csv", series=series, **args)


def _cell(value: str) -> str:
    """A level name is staff's text: never a formula when the CSV is opened in a spreadsheet."""
    return "'" + value if value[:1] in ("=", "+", "-", "@", "\t", "\r") else value


@bp.get("/insights/<series>.csv")
@staff_required
def insights_csv(series: str):
    if series not in SERIES:
        abort(404)
    choice = _level_known(chosen(request.args), insights.levels(get_session()))
    if choice.errors:
        return Response("\n".join(choice.errors) + "\n", status=400, mimetype="text/plain")
    data = insights.compute(get_session(), choice.filters)
    header, rows = csv_tables(data)[series]
    out = io.StringIO()
    writer = csv.writer(out)
    writer.writerow(header)
    writer.writerows([[_cell(v) if isinstance(v, str) else v for v in row] for row in rows])
    name = f"dawns-{series}-{choice.start}-to-{choice.end}.csv"
    return Response(out.getvalue(), mimetype="text/csv",
                    headers={"Content-Disposition": f'attachment; filename="{name}"'})
