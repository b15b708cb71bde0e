"""Organisation pages for readers: buy seats, manage them (the organisation's admin), accept an
invitation, claim a seat by email domain. Views are thin: validate, call a service, render."""
from __future__ import annotations

from flask import Blueprint, abort, current_app, flash, redirect, render_template, request, url_for
from flask_babel import ngettext
from flask_login import current_user, login_required

from ..accounts import seats
from ..accounts import services as accounts
from ..billing import checkout
from ..billing.gateway import BillingError
from ..db import get_session
from ..extensions import limiter
from ..forms import ActionForm
from ..membership import catalogue
from ..membership.organisations import SeatError, in_trial, seat_count
from ..i18n import gettext as _, per_interval
from ..billing import organisations as org_billing
from .forms import (
    NEWSLETTER_HINT,
    AcceptForm,
    ClaimForm,
    InviteForm,
    NewContactForm,
    OrganisationJoinForm,
    SeatNumberForm,
)

bp = Blueprint("organisations", __name__, url_prefix="/organisations")


def _limit(name: str):
    return limiter.limit(lambda: current_app.config[name], methods=["POST"])


@bp.route("/join", methods=["GET", "POST"])
@_limit("RATELIMIT_JOIN")
def join():
    """Self-serve: the organisation's name and seats (the contact's account too, for a
    visitor), then Stripe Checkout with quantity = seats; the buyer becomes its admin."""
    if current_user.is_authenticated and current_user.is_staff:
        flash("Staff create organisations that pay by invoice in the staff console.", "info")
        return redirect(url_for("staff.index"), code=303)
    level = catalogue.organisation_level(get_session())
    form = OrganisationJoinForm() if current_user.is_authenticated else NewContactForm()
    price = per_interval(level.amount, level.currency, level.interval) if level else None
    if not form.validate_on_submit():
        status = 422 if request.method == "POST" else 200
        return render_template("organisations/join.html", form=form, level=level, price=price,
                               hint=NEWSLETTER_HINT), status
    if level is None:
        return render_template("billing/unavailable.html",
                               message=_("Organisation memberships are not on sale yet. Please contact us.")), 503
    account = current_user if current_user.is_authenticated else None
    if account is None:
        existing = accounts.find_by_email(form.email.data)
        if existing is None:
            try:
                account = accounts.create_member(form.name.data, form.email.data, form.password.data,
                                                 bool(form.newsletter.data))
            except accounts.EmailTaken:
                existing = accounts.find_by_email(form.email.data)
        if existing is not None:
            accounts.notify_existing_account(existing)
            flash(_("Please log in to continue. If you have forgotten your password, you can reset it."), "info")
            return redirect(url_for("members.login", next=url_for("organisations.join")), code=303)
        accounts.sign_in(account)
    try:
        url = checkout.start_organisation_checkout(account, form.organisation.data, int(form.seats.data))
    except checkout.AlreadyMember as exc:
        flash(exc.message, "info")
        return redirect(url_for("members.account"), code=303)
    except BillingError as exc:
        return render_template("billing/unavailable.html", message=exc.message), 503
    return redirect(url, code=303)


@bp.get("/join/success")
@limiter.limit(lambda: current_app.config["RATELIMIT_SUCCESS"])
def join_success():
    session_id = request.args.get("session_id", "")
    if not session_id.startswith("cs_") or len(session_id) > 2000:
        abort(400)
    try:
        org = checkout.confirm_organisation_checkout(current_user if current_user.is_authenticated else None,
                                                     session_id)
    except BillingError as exc:
        return render_template("billing/unavailable.html", message=exc.message), 503
    if org is None:
        return render_template("organisations/success.html", org=None)
    if org.seats > 0:
        flash(ngettext("Thank you: %(name)s has %(num)d seat. Invite your colleagues below.",
                       "Thank you: %(name)s has %(num)d seats. Invite your colleagues below.", org.seats,
                       name=org.name), "info")
    return redirect(url_for("organisations.manage", slug=org.slug), code=303)


def _managed(slug: str):
    try:
        return seats.managed_by(current_user, slug)
    except seats.NotAllowed:
        abort(404)  # not theirs: no hint whether it exists


@bp.get("/<slug>")
@login_required
def manage(slug: str):
    org = _managed(slug)
    return _manage_page(org, InviteForm())


def _manage_page(org, invite_form: InviteForm, status: int = 200):
    session = get_session()
    number = SeatNumberForm(seats=org.seats)
    return render_template("organisations/manage.html", org=org, count=seat_count(session, org),
                           rows=seats.seats_of(org), invited=seats.pending_invitations(org), form=invite_form,
                           action=ActionForm(), trial=in_trial(org), domains=seats.domains_hint(org),
                           number=number, own_seat=seats.live_seat_of(org, current_user)), status


@bp.post("/<slug>/invite")
@login_required
@_limit("RATELIMIT_JOIN")
def invite(slug: str):
    org = _managed(slug)
    form = InviteForm()
    if not form.validate_on_submit():
        return _manage_page(org, form, 422)
    try:
        seats.invite(current_user, slug, form.email.data)
    except SeatError as exc:
        form.email.errors = [str(exc)]
        return _manage_page(org, form, 422)
    flash(_("Invitation sent to %(email)s.", email=form.email.data), "info")
    return redirect(url_for("organisations.manage", slug=slug), code=303)


@bp.post("/<slug>/seats/<int:seat_id>/remove")
@login_required
def remove_seat(slug: str, seat_id: int):
    _managed(slug)
    if not ActionForm().validate_on_submit():
        abort(400)
    if request.form.get("confirm") != "y":
        flash(_("Tick the box to confirm that the seat is to be removed."), "error")
        return redirect(url_for("organisations.manage", slug=slug), code=303)
    try:
        email = seats.remove(current_user, slug, seat_id)
    except SeatError as exc:
        flash(str(exc), "error")
    else:
        flash(_("The seat of %(email)s is removed.", email=email), "info")
    return redirect(url_for("organisations.manage", slug=slug), code=303)


@bp.post("/<slug>/invitations/revoke")
@login_required
def revoke_invitation(slug: str):
    _managed(slug)
    form = InviteForm()
    if not form.validate_on_submit():
        abort(400)
    if seats.revoke_invitation(current_user, slug, form.email.data):
        flash(_("The invitation of %(email)s no longer works.", email=form.email.data), "info")
    return redirect(url_for("organisations.manage", slug=slug), code=303)


@bp.route("/invitations/<token>", methods=["GET", "POST"])
@_limit("RATELIMIT_LOGIN")
def invitation(token: str):
    """GET shows the invitation and a button; only the POST uses the link (mail scanners that
    open links do not burn it)."""
    found = seats.look_at_invitation(token)
    if found is None:
        return render_template("organisations/invalid.html"), 404
    form = AcceptForm()
    current = current_user if current_user.is_authenticated else None
    # new: a new account; takeover: an account that never proved the address (a new password);
    # signin: an account that did (its owner signs in first).
    mode = "new" if found.account is None else ("takeover" if found.account.email_verified_at is None else "signin")
    page = dict(invitation=found, form=form, mode=mode, signed_in_as_invitee=current is not None
                and found.account is not None and current.id == found.account.id)
    if request.method == "POST" and form.validate_on_submit():
        if (mode == "new" and not form.require_new_account()) or (mode == "takeover" and not form.require_password()):
            return render_template("organisations/invitation.html", **page), 422
        try:
            account, org, sign_in = seats.accept_invitation(
                token, current=current, name=form.name.data, password=form.password.data,
                newsletter_opt_in=bool(form.newsletter.data))
        except SeatError as exc:
            flash(str(exc), "error")
            return render_template("organisations/invitation.html", **page), 409
        if sign_in:
            accounts.sign_in(account)
        flash(_("Welcome: you have a seat in %(name)s's DAWNS membership.", name=org.name), "info")
        return redirect(url_for("members.account"), code=303)
    status = 422 if request.method == "POST" else 200
    return render_template("organisations/invitation.html", **page), status


@bp.route("/<slug>/claim", methods=["GET", "POST"])
@login_required
@_limit("RATELIMIT_RESET")  # each claim may send a confirmation mail
def claim(slug: str):
    org = seats.by_slug(slug)
    if org is None or not org.domains:
        abort(404)
    form = ClaimForm()
    allowed = seats.claimable(current_user, org)
    if request.method == "POST" and form.validate_on_submit():
        try:
            done = seats.claim(current_user, slug, bool(form.newsletter.data))
        except SeatError as exc:
            flash(str(exc), "error")
            return render_template("organisations/claim.html", org=org, form=form, allowed=allowed,
                                   domains=seats.domains_hint(org)), 403 if not allowed else 409
        if done == "taken":
            flash(_("You have a seat in %(name)s's DAWNS membership.", name=org.name), "info")
            return redirect(url_for("members.account"), code=303)
        return redirect(url_for("organisations.claim_sent", slug=slug), code=303)  # a reload sends nothing more
    status = 422 if request.method == "POST" else 200
    return render_template("organisations/claim.html", org=org, form=form, allowed=allowed,
                           domains=seats.domains_hint(org)), status


@bp.get("/<slug>/claim/sent")
@login_required
def claim_sent(slug: str):
    org = seats.by_slug(slug)
    if org is None:
        abort(404)
    return render_template("organisations/claim_sent.html", org=org, email=current_user.email)


@bp.post("/<slug>/seats/mine")
@login_required
def take_own_seat(slug: str):
    _managed(slug)
    if not ActionForm().validate_on_submit():
        abort(400)
    try:
        seats.take_own_seat(current_user, slug)
    except SeatError as exc:
        flash(str(exc), "error")
    else:
        flash(_("You have a seat: DAWNS is yours to read too."), "info")
    return redirect(url_for("organisations.manage", slug=slug), code=303)


@bp.post("/<slug>/seats/number")
@login_required
def change_seats(slug: str):
    _managed(slug)
    form = SeatNumberForm()
    if not form.validate_on_submit():
        for error in form.seats.errors:
            flash(str(error), "error")
        return redirect(url_for("organisations.manage", slug=slug), code=303)
    try:
        change = org_billing.admin_change_seats(current_user, slug, int(form.seats.data))
    except org_billing.OrganisationError as exc:
        flash(str(exc), "error")
    else:
        if change.suspended:
            message = ngettext(
                "Your organisation now has %(num)d seat; %(suspended)d of the newest are suspended. "
                "Stripe prorates the difference on the next invoice.",
                "Your organisation now has %(num)d seats; %(suspended)d of the newest are suspended. "
                "Stripe prorates the difference on the next invoice.", change.after, suspended=change.suspended)
        else:
            message = ngettext(
                "Your organisation now has %(num)d seat. Stripe prorates the difference on the next invoice.",
                "Your organisation now has %(num)d seats. Stripe prorates the difference on the next invoice.",
                change.after)
        flash(message, "info")
    return redirect(url_for("organisations.manage", slug=slug), code=303)


@bp.route("/claim/<token>", methods=["GET", "POST"])
@login_required
@_limit("RATELIMIT_LOGIN")
def confirm_claim(token: str):
    org = seats.look_at_claim(token)
    if org is None:
        return render_template("organisations/invalid.html"), 404
    form = ActionForm()
    if request.method == "POST":
        if not form.validate_on_submit():
            abort(400)
        try:
            account, org = seats.confirm_claim(token, current_user)
        except SeatError as exc:
            flash(str(exc), "error")
            return render_template("organisations/claim_confirm.html", org=org, form=form), 409
        flash(_("Your address is confirmed and you have a seat in %(name)s's DAWNS membership.", name=org.name),
              "info")
        return redirect(url_for("members.account"), code=303)
    return render_template("organisations/claim_confirm.html", org=org, form=form)
