"""The staff console (journey 6): search, a member's page with its timeline, actions, export."""
from __future__ import annotations

import csv
import io
from datetime import datetime, time, timezone
from functools import wraps

from flask import Blueprint, Response, abort, flash, redirect, render_template, request, stream_with_context, url_for
from flask_login import current_user

from ..accounts import api_tokens
from ..db import get_session, new_session
from ..domain.membership import MembershipStatus, Role, describe
from ..membership import directory
from . import services
from .forms import AddStaffForm, CompForm, ConfirmForm, LevelForm, RoleForm, TokenForm

bp = Blueprint("staff", __name__, url_prefix="/staff")

PER_PAGE = 50


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


def _filter_from_args() -> directory.MemberFilter:
    status = request.args.get("status") or None
    try:
        status_value = MembershipStatus(status) if status else None
    except ValueError:
        abort(400)
    entitled_arg = request.args.get("entitled")
    entitled = {"yes": True, "no": False}.get(entitled_arg or "")
    sort = request.args.get("sort", "newest")
    return directory.MemberFilter(q=request.args.get("q", "")[:200], status=status_value, entitled=entitled,
                                  paying_twice=request.args.get("flag") == "paying_twice",
                                  sort=sort if sort in ("newest", "oldest") else "newest")


@bp.get("")
@staff_required
def index():
    f = _filter_from_args()
    page = request.args.get("page", 1, type=int) or 1
    rows, total = directory.search(get_session(), f, page, PER_PAGE)
    pages = max(1, (total + PER_PAGE - 1) // PER_PAGE)
    page = min(page, pages)
    args = {k: v for k, v in request.args.items() if k != "page" and v}
    return render_template("staff/index.html", rows=rows, total=total, page=page, pages=pages, f=f, args=args,
                           statuses=[s.value for s in MembershipStatus])


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
        billing_email=services.billing_email(account),
        comp_form=CompForm(prefix="comp"), confirm_form=ConfirmForm(),
    )


@bp.get("/checkouts")
@staff_required
def checkouts():
    return render_template("staff/checkouts.html", rows=services.foreign_checkouts(),
                           dashboard_url=services.dashboard_url)


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


def _neutralise(value) -> str:
    """Spreadsheet formula injection: a cell must not start with = + - @ (or tab / CR)."""
    text = "" if value is None else (value.isoformat() if isinstance(value, datetime) else str(value))
    return "'" + text if text[:1] in ("=", "+", "-", "@", "\t", "\r") else text


CSV_COLUMNS = ["id", "email", "name", "status", "entitled", "paid_through", "cancel_at_period_end",
               "level", "level_amount", "level_currency", "level_interval", "stripe_customer_id",
               "newsletter_status", "created_at"]


@bp.get("/export.csv")
@staff_required
def export():
    f = _filter_from_args()
    # The stream outlives the view: it owns its session (a server-side cursor) and always
    # closes it, whether the download finishes or the client goes away.
    session = new_session()

    def generate():
        try:
            yield from _rows(session)
        finally:
            session.close()

    def _rows(session):
        buf = io.StringIO()
        writer = csv.writer(buf)
        writer.writerow(CSV_COLUMNS)
        yield buf.getvalue()
        for m in directory.iter_all(session, f):
            buf.seek(0)
            buf.truncate()
            level = m["level"] or {}
            writer.writerow([_neutralise(v) for v in (
                m["id"], m["email"], m["name"], m["status"], "yes" if m["entitled"] else "no", m["paid_through"],
                "yes" if m["cancel_at_period_end"] else "no", level.get("name"), level.get("amount"),
                level.get("currency"), level.get("interval"), m["stripe_customer_id"], m["newsletter"]["status"],
                m["created_at"])])
            yield buf.getvalue()

    stamp = datetime.now(timezone.utc).strftime("%Y%m%d-%H%M%S")
    return Response(stream_with_context(generate()), mimetype="text/csv",
                    headers={"Content-Disposition": f'attachment; filename="members-{stamp}.csv"'})


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
    return _run(form, lambda: services.add_level(current_user, form.name.data, int(form.amount.data * 100),
                                                 form.interval.data, form.price.data or None, bool(form.public.data)),
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
