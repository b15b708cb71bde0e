"""`/staff/webhooks`: the Stripe events as they were delivered, with filters, each linked to its
member; a failed or unlinked one can be replayed: it goes back in the queue and the worker
applies it through the same handler and ordering rules (a stale event stays stale); audited."""
from __future__ import annotations

from datetime import datetime, timedelta, timezone

from flask import redirect, render_template, request, url_for
from flask_login import current_user

from ..accounts.services import find_by_email
from ..billing.queue import replayable
from ..billing.webhooks import EventOutcome
from . import services
from .forms import ConfirmForm
from .routes import _run, bp, staff_required

OUTCOMES = [o.value for o in EventOutcome if o not in (EventOutcome.DUPLICATE,)]


def _day(text: str | None, errors: list[str], what: str) -> datetime | None:
    if not text:
        return None
    try:
        return datetime.strptime(text.strip(), "%Y-%m-%d").replace(tzinfo=timezone.utc)
    except ValueError:
        errors.append(f"{what}: {text!r} is not a date (YYYY-MM-DD).")
        return None


def _filter(args) -> tuple[services.DeliveryFilter, list[str]]:
    errors: list[str] = []
    member_text = (args.get("member") or "").strip()
    member = None
    if member_text.isdigit():
        member = int(member_text)
    elif member_text:
        account = find_by_email(member_text)
        member = account.id if account else -1  # nobody: an empty list, not every event
    outcome = args.get("outcome") or None
    if outcome and outcome not in OUTCOMES:
        errors.append(f"Unknown outcome {outcome!r}.")
        outcome = None
    until = _day(args.get("to"), errors, "To")
    before = args.get("before", "")
    return services.DeliveryFilter(
        type=(args.get("type") or "").strip()[:100] or None, outcome=outcome, member=member,
        since=_day(args.get("from"), errors, "From"), until=until + timedelta(days=1) if until else None,
        before=int(before) if before.isdigit() else None), errors


@bp.get("/webhooks")
@staff_required
def webhooks():
    f, errors = _filter(request.args)
    rows, next_before = services.webhook_deliveries(f)
    keep = {k: v for k, v in request.args.items() if k in ("type", "outcome", "member", "from", "to") and v}
    return render_template("staff/webhooks.html", rows=rows, errors=errors, args=keep, outcomes=OUTCOMES,
                           next_url=url_for("staff.webhooks", before=next_before, **keep) if next_before else None,
                           confirm_form=ConfirmForm(), replayable=_offered, dashboard_url=services.dashboard_url)


def _offered(event, member_id) -> bool:
    """Replay is offered for a failed event, and for an unlinked one once its customer is a member's."""
    return replayable(event) and (event.status == "failed" or member_id is not None)


@bp.post("/webhooks/<stripe_id>/replay")
@staff_required
def replay_webhook(stripe_id: str):
    back = request.form.get("back", "")
    target = back if back.startswith("/staff/webhooks") and not back.startswith("//") else url_for("staff.webhooks")
    return _run(ConfirmForm(), lambda: services.requeue_stripe_event(current_user, stripe_id),
                "The event is queued again; the worker applies it in its customer's order, and an event older "
                "than what we hold changes nothing.", redirect(target, code=303))
