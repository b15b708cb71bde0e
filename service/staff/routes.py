"""The staff console (journey 6): search, a member's page with its timeline, actions, export."""
from __future__ import annotations

from datetime import datetime, time, timezone
from functools import wraps

from flask import Blueprint, abort, flash, redirect, render_template, request, send_file, url_for
from flask_login import current_user

from ..accounts import api_tokens
from sqlalchemy.exc import SQLAlchemyError

from .. import mail as mail_queue
from ..billing import queue as stripe_queue
from ..billing.organisations import NewInvoiced
from ..db import get_session
from ..domain.membership import MembershipStatus, Role, describe
from ..forms import ActionForm
from ..membership import directory, exports
from ..newsletter import outbox as newsletter_outbox
from ..membership.organisations import in_trial, membership_status_label, organisations_of_admin, seat_of
from ..models import ExportJob, Organisation
from . import services
from .forms import (
    AddStaffForm,
    CompForm,
    ConfirmForm,
    DomainsForm,
    LevelForm,
    OrganisationForm,
    RoleForm,
    SeatsForm,
    TokenForm,
)

bp = Blueprint("staff", __name__, url_prefix="/staff")

PER_PAGE = 50


@bp.context_processor
def _queue_health():
    """Every staff page says so when Stripe events wait too long (the worker is down or behind)."""
    if not (current_user.is_authenticated and current_user.is_staff):
        return {}
    session = get_session()
    return {"worker_behind": stripe_queue.behind(session), "stripe_failed": stripe_queue.failed_count(session),
            "queues_waiting": _queues_waiting(session)}


# What waits in each of the worker's other queues, in the words staff use.
_OTHER_QUEUES = (("exports", "CSV exports", exports.depth), ("mail", "emails to readers", mail_queue.depth),
                 ("newsletter", "DAWNS Digest changes", newsletter_outbox.depth))


def _queues_waiting(session) -> list[tuple[str, int]]:
    """(what, minutes) for each of the worker's other queues whose oldest due row has waited
    longer than the Stripe queue is allowed to: with the worker down they wait silently."""
    waiting = []
    for _name, words, measure in _OTHER_QUEUES:
        try:
            _depth, oldest = measure(session)
        except SQLAlchemyError:
            session.rollback()
            continue
        if oldest is not None and oldest > stripe_queue.BEHIND_SECONDS:
            waiting.append((words, int(oldest // 60)))
    return waiting


def staff_required(view):
    """Strangers are sent to log in; members get 403."""

    @wraps(view)
    def wrapper(*args, **kwargs):
        from ..extensions import login_manager

        if not current_user.is_authenticated:
            return login_manager.unauthorized()
        if not current_user.is_staff:
            abort(403)
        return view(*args, **kwargs)

    return wrapper


def admin_required(view):
    @wraps(view)
    @staff_required
    def wrapper(*args, **kwargs):
        if not current_user.is_admin:
            abort(403)
        return view(*args, **kwargs)

    return wrapper


def _filter_from_args(args=None) -> directory.MemberFilter:
    args = request.args if args is None else args
    status = args.get("status") or None
    try:
        status_value = MembershipStatus(status) if status else None
    except ValueError:
        abort(400)
    entitled_arg = args.get("entitled")
    entitled = {"yes": True, "no": False}.get(entitled_arg or "")
    sort = args.get("sort", "newest")
    return directory.MemberFilter(q=args.get("q", "")[:200], status=status_value, entitled=entitled,
                                  paying_twice=args.get("flag") == "paying_twice",
                                  sort=sort if sort in ("newest", "oldest") else "newest")


@bp.get("")
@staff_required
def index():
    f = _filter_from_args()
    page = min(max(request.args.get("page", 1, type=int) or 1, 1), 1_000_000)
    try:
        result = directory.search(get_session(), f, page=page, cursor=request.args.get("cursor") or None,
                                  per_page=PER_PAGE)
    except directory.BadCursor:
        return redirect(url_for("staff.index", **_list_args()), code=303)
    return render_template("staff/index.html", result=result, f=f, args=_list_args(),
                           statuses=[s.value for s in MembershipStatus])


def _list_args() -> dict[str, str]:
    return {k: v for k, v in request.args.items() if k not in ("page", "cursor") and v}


@bp.get("/members/<int:member_id>")
@staff_required
def member(member_id: int):
    data = directory.get_member(get_session(), member_id)
    if data is None:
        abort(404)
    from ..models import Account

    account = get_session().get(Account, member_id)
    return render_template(
        "staff/member.html", m=data, account=account, membership=account.membership, words=describe(data["status"]),
        subs=services.subscriptions_of(account), timeline=services.timeline(account),
        failed=services.failed_deliveries(account), dashboard_url=services.dashboard_url,
        billing_email=services.billing_email(account), seat=seat_of(get_session(), account.id),
        admin_of=organisations_of_admin(get_session(), account),
        comp_form=CompForm(prefix="comp"), confirm_form=ConfirmForm(),
    )


@bp.get("/checkouts")
@staff_required
def checkouts():
    return render_template("staff/checkouts.html", rows=services.foreign_checkouts(),
                           dashboard_url=services.dashboard_url)


@bp.get("/events")
@staff_required
def stripe_events():
    return render_template("staff/events.html", rows=services.stripe_trouble(), confirm_form=ConfirmForm(),
                           dashboard_url=services.dashboard_url)


@bp.post("/events/<stripe_id>/requeue")
@staff_required
def requeue_event(stripe_id: str):
    return _run(ConfirmForm(), lambda: services.requeue_stripe_event(current_user, stripe_id),
                "The event is queued again; the worker will apply it in order.",
                redirect(url_for("staff.stripe_events"), code=303))


def _back(member_id: int):
    return redirect(url_for("staff.member", member_id=member_id), code=303)


def _admin_back():
    return redirect(url_for("staff.admin"), code=303)


def _flash_errors(form) -> None:
    for errors in form.errors.values():
        for e in errors:
            flash(e, "error")


def _run(form, action, done: str, back):
    """Every staff action: validate (with its confirmation box), act, say what happened, go back."""
    if not form.validate_on_submit():
        _flash_errors(form)
        return back
    try:
        action()
    except services.ActionError as exc:
        flash(str(exc), "error")
    else:
        flash(done, "info")
    return back


@bp.post("/members/<int:member_id>/comp")
@staff_required
def comp(member_id: int):
    form = CompForm(prefix="comp")

    def act():
        until = datetime.combine(form.until.data, time.max, tzinfo=timezone.utc) if form.until.data else None
        services.comp(current_user, member_id, form.reason.data.strip(), until)

    return _run(form, act, "Complimentary membership granted.", _back(member_id))


@bp.post("/members/<int:member_id>/comp/revoke")
@staff_required
def revoke_comp(member_id: int):
    return _run(ConfirmForm(), lambda: services.revoke_comp(current_user, member_id),
                "Complimentary membership revoked.", _back(member_id))


@bp.post("/members/<int:member_id>/newsletter/<int:row_id>/retry")
@staff_required
def retry_newsletter(member_id: int, row_id: int):
    return _run(ConfirmForm(), lambda: services.retry_newsletter(current_user, member_id, row_id),
                "The newsletter delivery will be retried.", _back(member_id))


@bp.post("/members/<int:member_id>/send-reset")
@staff_required
def send_reset(member_id: int):
    return _run(ConfirmForm(), lambda: services.send_reset(current_user, member_id),
                "A password reset link was sent to the member.", _back(member_id))


@bp.post("/members/<int:member_id>/sessions/end")
@staff_required
def end_sessions(member_id: int):
    return _run(ConfirmForm(), lambda: services.end_member_sessions(current_user, member_id),
                "Every session of this member has ended; they must log in again.", _back(member_id))


@bp.post("/exports")
@staff_required
def request_export():
    """Exports are jobs the worker runs: a web timeout can never cut one off."""
    if not _csrf_only():
        abort(400)
    job = exports.request_export(get_session(), current_user, _filter_from_args(request.form))
    return redirect(url_for("staff.export_status", job_id=job.id), code=303)


def _csrf_only() -> bool:
    return ActionForm().validate_on_submit()


@bp.get("/exports/<int:job_id>")
@staff_required
def export_status(job_id: int):
    job = get_session().get(ExportJob, job_id)
    if job is None or not exports.may_see(current_user, job):
        abort(404)  # another staff member's export (its filters are their search)
    return render_template("staff/export.html", job=job)


@bp.get("/exports/<int:job_id>/download")
@staff_required
def export_download(job_id: int):
    try:
        path = exports.download_path(get_session(), current_user, job_id)
    except exports.ExportNotReady:
        abort(404)
    return send_file(path, mimetype="text/csv", as_attachment=True, download_name=f"members-{job_id}.csv",
                     max_age=0)


# --- organisations -----------------------------------------------------------------------------

@bp.get("/organisations")
@staff_required
def organisations():
    return render_template("staff/organisations.html", rows=services.organisations())


def _organisation_form() -> OrganisationForm:
    form = OrganisationForm(prefix="org")
    form.level.choices = [(lv.id, f"{lv.name}: {lv.amount / 100:,.2f} {lv.currency.upper()} per seat per year")
                          for lv in services.organisation_levels()]
    return form


@bp.route("/organisations/new", methods=["GET", "POST"])
@staff_required
def new_organisation():
    """By invoice: the form stays filled in when Stripe or a field says no."""
    form = _organisation_form()
    if form.validate_on_submit():
        try:
            created = services.create_organisation(current_user, NewInvoiced(
                name=form.name.data, contact_email=form.contact_email.data, contact_name=form.contact_name.data or "",
                seats=form.seats.data, domains=form.domains.data or "", trial_days=form.trial_days.data,
                level_id=form.level.data))
        except services.ActionError as exc:
            flash(str(exc), "error")
        else:
            flash(f"{created.organisation.name} was created; Stripe emails its invoice to "
                  f"{created.contact.email}." + (" They were sent a link to choose a password."
                                                  if created.contact_created else ""), "info")
            if created.warning:
                flash(created.warning, "error")
            return redirect(url_for("staff.organisation", org_id=created.organisation.id), code=303)
    status = 422 if request.method == "POST" else 200
    return render_template("staff/organisation_new.html", form=form), status


@bp.get("/organisations/<int:org_id>")
@staff_required
def organisation(org_id: int):
    org = get_session().get(Organisation, org_id)
    if org is None:
        abort(404)
    seats_form = SeatsForm(prefix="seats")
    seats_form.seats.data = org.seats
    return render_template(
        "staff/organisation.html", org=org, count=services.organisation_seat_count(org),
        seats=services.organisation_seats(org), subs=services.organisation_subscriptions(org),
        timeline=services.organisation_timeline(org), dashboard_url=services.dashboard_url,
        state=membership_status_label(org), in_trial=in_trial(org),
        seats_form=seats_form, comp_form=CompForm(prefix="comp"), confirm_form=ConfirmForm(),
        domains_form=DomainsForm(prefix="domains", domains=", ".join(org.domains or [])))


def _org_back(org_id: int):
    return redirect(url_for("staff.organisation", org_id=org_id), code=303)


@bp.post("/organisations/<int:org_id>/seats")
@staff_required
def organisation_seats(org_id: int):
    form = SeatsForm(prefix="seats")

    def act():
        change = services.change_organisation_seats(current_user, org_id, form.seats.data)
        if change.suspended:
            flash(f"{change.suspended} seat(s) beyond the new number were suspended, newest first.", "info")
        if change.warning:
            flash(change.warning, "error")

    return _run(form, act, "Seats changed.", _org_back(org_id))


@bp.post("/organisations/<int:org_id>/domains")
@staff_required
def organisation_domains(org_id: int):
    form = DomainsForm(prefix="domains")
    return _run(form, lambda: services.set_organisation_domains(current_user, org_id, form.domains.data or ""),
                "Domains saved: readers with a confirmed address on them can claim a seat.", _org_back(org_id))


@bp.post("/organisations/<int:org_id>/comp")
@staff_required
def comp_organisation(org_id: int):
    form = CompForm(prefix="comp")

    def act():
        until = datetime.combine(form.until.data, time.max, tzinfo=timezone.utc) if form.until.data else None
        services.comp_organisation(current_user, org_id, form.reason.data.strip(), until)

    return _run(form, act, "The organisation is comped: its seats entitle.", _org_back(org_id))


@bp.post("/organisations/<int:org_id>/comp/end")
@staff_required
def end_organisation_comp(org_id: int):
    return _run(ConfirmForm(), lambda: services.end_organisation_comp(current_user, org_id),
                "The comp has ended: the subscription decides again.", _org_back(org_id))


@bp.post("/organisations/<int:org_id>/seats/<int:seat_id>/remove")
@staff_required
def remove_organisation_seat(org_id: int, seat_id: int):
    return _run(ConfirmForm(), lambda: services.remove_organisation_seat(current_user, org_id, seat_id),
                "The seat was removed.", _org_back(org_id))


# --- admin: staff accounts and API tokens -------------------------------------------------------

@bp.get("/admin")
@admin_required
def admin():
    return _admin_page()


def _admin_page(new_token: tuple[str, str] | None = None):
    return render_template("staff/admin.html", staff=services.staff_accounts(), tokens=api_tokens.list_tokens(),
                           add_form=AddStaffForm(prefix="add"), token_form=TokenForm(prefix="tok"),
                           role_form=RoleForm(), confirm_form=ConfirmForm(), new_token=new_token)


@bp.get("/admin/levels")
@admin_required
def levels():
    return render_template("staff/levels.html", levels=services.catalogue_levels(), form=LevelForm(prefix="lvl"),
                           confirm_form=ConfirmForm())


@bp.post("/admin/levels")
@admin_required
def add_level():
    form = LevelForm(prefix="lvl")
    back = redirect(url_for("staff.levels"), code=303)
    return _run(form, lambda: services.add_level(current_user, form.name.data, form.cents(),
                                                 form.interval.data, form.price.data or None, bool(form.public.data),
                                                 bool(form.organisation.data)),
                "Level added.", back)


@bp.post("/admin/levels/<int:level_id>/archive")
@admin_required
def archive_level(level_id: int):
    archived = request.form.get("archived", "1") == "1"
    return _run(ConfirmForm(), lambda: services.archive_level(current_user, level_id, archived),
                "Level archived: nobody can choose it now; its members keep their membership." if archived
                else "Level offered again.", redirect(url_for("staff.levels"), code=303))


@bp.post("/admin/staff")
@admin_required
def add_staff():
    form = AddStaffForm(prefix="add")
    return _run(form, lambda: services.add_staff(current_user, form.email.data, form.name.data, Role(form.role.data)),
                "Staff account added; a link to choose a password was emailed.", _admin_back())


@bp.post("/admin/staff/<int:account_id>/role")
@admin_required
def set_role(account_id: int):
    form = RoleForm()
    return _run(form, lambda: services.set_role(current_user, account_id, Role(form.role.data)),
                "Role changed.", _admin_back())


@bp.post("/admin/tokens")
@admin_required
def create_token():
    form = TokenForm(prefix="tok")
    if not form.validate_on_submit():
        _flash_errors(form)
        return _admin_back()
    try:
        token = api_tokens.create_token(form.name.data, form.scopes.data, actor=current_user.email,
                                        actor_id=current_user.id)
    except api_tokens.TokenExists:
        flash("A token with that name exists.", "error")
        return _admin_back()
    except api_tokens.TokenInvalid as exc:
        flash(str(exc), "error")
        return _admin_back()
    return _admin_page(new_token=(form.name.data, token))  # shown once, on this response only


@bp.post("/admin/tokens/<int:token_id>/revoke")
@admin_required
def revoke_token(token_id: int):
    def act():
        if api_tokens.revoke_token(token_id=token_id, actor=current_user.email, actor_id=current_user.id) is None:
            raise services.ActionError("No such live token.")

    return _run(ConfirmForm(), act, "Token revoked.", _admin_back())


from . import insights as _insights  # noqa: E402,F401  (their routes join this blueprint)
from . import webhooks as _webhooks  # noqa: E402,F401


from . import import_view  # noqa: E402,F401 - /staff/admin/import, on this blueprint
