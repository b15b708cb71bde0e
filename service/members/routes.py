"""Reader pages. Views are thin: validate, call a service function, render."""
from __future__ import annotations

from flask import Blueprint, abort, current_app, flash, redirect, render_template, request, url_for
from flask_login import current_user, login_required

from ..accounts import email_change
from ..accounts import services as accounts
from ..accounts import signin_links
from ..billing import checkout
from ..billing.gateway import BillingError
from ..billing.runtime import get_gateway
from ..db import get_session
from ..domain.membership import PAYING, START_WORDS, Interval, MembershipStatus, describe, paid_through_label
from ..domain.newsletter import list_words, on_its_way
from ..extensions import limiter
from ..i18n import describe_level, gettext as _, known, remember
from ..forms import ActionForm
from ..membership import catalogue, organisations
from ..membership.service import is_entitled
from ..security import safe_next
from .forms import (
    ConfirmWithPasswordForm,
    JoinForm,
    LevelChoiceForm,
    LoginForm,
    ResetPasswordForm,
    ResetRequestForm,
    SignInLinkForm,
)

bp = Blueprint("members", __name__)


@bp.post("/language")
def choose_language():
    """The switcher's buttons for a signed-in reader: the choice is saved to the account (its
    pages, mail, Checkout, the Portal and DAWNS), and remembered by this browser."""
    lang = known(request.form.get("lang"))
    if not ActionForm().validate_on_submit() or lang is None:
        abort(400)
    if current_user.is_authenticated:
        accounts.save_language(current_user.id, lang)
    response = redirect(safe_next(request.form.get("next"), url_for("members.index")), code=303)
    remember(response, lang)
    return response


def _limit(name: str):
    return limiter.limit(lambda: current_app.config[name], methods=["POST"])


def _catalogue() -> dict:
    """The public levels and the "give more" minimums, for the level forms."""
    session = get_session()
    try:
        catalogue.ensure_once(session, get_gateway())
        session.commit()
    except BillingError:
        session.rollback()  # Stripe unreachable: offer what the catalogue already has
    return {"levels": catalogue.joinable(session),
            "minimums": {i: catalogue.minimum(session, i) for i in Interval}}


@bp.get("/")
def index():
    offered = _catalogue()["levels"]
    return render_template("members/index.html", cheapest=offered[0] if offered else None)


@bp.route("/join", methods=["GET", "POST"])
@_limit("RATELIMIT_JOIN")
def join():
    if current_user.is_authenticated:
        # Never a second account by accident: this browser is someone's already.
        flash(_("You are signed in as %(email)s. To join as someone else, log out first.", email=current_user.email), "info")
        target = "staff.index" if current_user.is_staff else "members.checkout_again"
        return redirect(url_for(target), code=303)
    form = JoinForm(**_catalogue())
    if not form.validate_on_submit():
        status = 422 if request.method == "POST" else 200
        return render_template("members/join.html", form=form), status
    existing = accounts.find_by_email(form.email.data)
    if existing is None:
        try:
            account = accounts.create_member(
                form.name.data, form.email.data, form.password.data, bool(form.newsletter.data)
            )
        except accounts.EmailTaken:
            existing = accounts.find_by_email(form.email.data)
    if existing is not None:
        accounts.notify_existing_account(existing)
        flash(_("Please log in to continue. If you have forgotten your password, you can reset it."), "info")
        return redirect(url_for("members.login"), code=303)
    accounts.sign_in(account)
    return _to_checkout(account, form.choice())


def _to_checkout(account, choice: checkout.Choice):
    try:
        url = checkout.start_checkout(account, choice)
    except checkout.AlreadyMember as exc:
        flash(exc.message, "info")
        return redirect(url_for("members.account"), code=303)
    except BillingError as exc:
        return render_template("billing/unavailable.html", message=exc.message), 503
    return redirect(url, code=303)


@bp.route("/account/checkout", methods=["GET", "POST"])
@login_required
def checkout_again():
    """A pending or ended member chooses a level and starts (or restarts) the membership."""
    if current_user.is_staff:
        abort(403)  # staff accounts never pay: a Stripe customer is linked to readers only
    form = LevelChoiceForm(**_catalogue())
    if not form.validate_on_submit():
        status = 422 if request.method == "POST" else 200
        return render_template("members/checkout.html", form=form), status
    return _to_checkout(current_user, form.choice())


@bp.route("/account/level", methods=["GET", "POST"])
@login_required
def change_level():
    """Change level: the subscription's price is swapped, prorated; the webhook confirms it."""
    membership = current_user.membership
    if membership is None or membership.status not in PAYING:
        flash(_("You have no membership to change yet: choose a level to join."), "info")
        return redirect(url_for("members.checkout_again"), code=303)
    form = LevelChoiceForm(**_catalogue())
    if form.validate_on_submit():
        try:
            checkout.change_level(current_user, form.choice())
        except BillingError as exc:
            flash(exc.message, "error")
        else:
            flash(_("Your new level is on its way: it shows here as soon as Stripe confirms it."), "info")
            return redirect(url_for("members.account"), code=303)
    status = 422 if request.method == "POST" else 200
    return render_template("members/level.html", form=form, membership=membership,
                           current=describe_level(membership.level) if membership.level else None), status


@bp.get("/join/success")
@limiter.limit(lambda: current_app.config["RATELIMIT_SUCCESS"])
def join_success():
    session_id = request.args.get("session_id", "")
    # Checkout Session ids start with cs_ (the demo stand-in's too); anything else is not ours.
    if not session_id.startswith("cs_") or len(session_id) > 2000:
        return render_template("billing/success.html", view=None), 400
    try:
        account = current_user if current_user.is_authenticated else None
        view = checkout.confirm_checkout(account, session_id)
    except BillingError as exc:
        return render_template("billing/unavailable.html", message=exc.message), 503
    return render_template("billing/success.html", view=view, describe=describe)


@bp.get("/join/cancelled")
def join_cancelled():
    return render_template("billing/cancelled.html", form=ActionForm())


@bp.route("/login", methods=["GET", "POST"])
@_limit("RATELIMIT_LOGIN")
def login():
    form = LoginForm()
    next_url = safe_next(request.args.get("next"), "")
    if form.validate_on_submit():
        account = accounts.authenticate(form.email.data, form.password.data)
        if account is not None:
            accounts.sign_in(account)
            default = url_for("staff.index") if account.is_staff else url_for("members.account")
            return redirect(safe_next(request.args.get("next"), default), code=303)
        form.password.errors.append(_("That email and password do not match an account."))
    status = 422 if request.method == "POST" else 200
    return render_template("members/login.html", form=form, link_form=SignInLinkForm(formdata=None),
                           next_url=next_url), status


def _address_key() -> str:
    """The per-address limit on sign-in link requests (a mailbox is not flooded from many IPs)."""
    return "signin-link:" + accounts.normalize_email(request.form.get("email", ""))[:320]


@bp.post("/login/link")
@_limit("RATELIMIT_SIGNIN_LINK")
@limiter.limit(lambda: current_app.config["RATELIMIT_SIGNIN_LINK"], key_func=_address_key, methods=["POST"],
               scope="signin-link-address")
def signin_link_request():
    """"Email me a sign-in link": the same answer whether or not the address has an account."""
    link_form = SignInLinkForm()
    next_url = safe_next(request.args.get("next"), "")
    if not link_form.validate_on_submit():
        return render_template("members/login.html", form=LoginForm(formdata=None), link_form=link_form,
                               next_url=next_url), 422
    signin_links.request_link(link_form.email.data, next_url)
    return render_template("members/signin_link_sent.html"), 200


@bp.route("/login/link/<token>", methods=["GET", "POST"])
@_limit("RATELIMIT_LOGIN")
def signin_link(token: str):
    """GET only shows a "Sign in" button (mail scanners open links); the POST uses the link."""
    found = signin_links.pending(token)
    if found is None:
        return _signin_link_invalid()
    form = ActionForm()
    if request.method == "GET" or not form.validate_on_submit():
        if request.method == "POST":
            abort(400)  # no CSRF token: the link stays unused
        return render_template("members/signin_link.html", form=form, email=found.account.email)
    used = signin_links.use_link(token)
    if used is None:
        return _signin_link_invalid()
    if used.proved_address:
        flash(_("Your email address is confirmed. The password this account had no longer works: sign in with "
                "a link, or choose a new password with \"Forgot your password?\"."), "info")
    return redirect(safe_next(used.next_url, url_for("members.account")), code=303)


def _signin_link_invalid():
    return render_template("members/signin_link_invalid.html", link_form=SignInLinkForm(formdata=None)), 400


@bp.route("/logout", methods=["GET", "POST"])
def logout():
    form = ActionForm()
    if request.method == "GET":
        # Logging out changes state, so it takes a POST; GET offers the button.
        return render_template("members/logout.html", form=form)
    if not form.validate_on_submit():
        abort(400)
    accounts.sign_out()
    flash(_("You are logged out."), "info")
    return redirect(url_for("members.index"), code=303)


@bp.post("/account/sign-out-everywhere")
@login_required
def sign_out_everywhere():
    if not ActionForm().validate_on_submit():
        abort(400)
    accounts.sign_out_everywhere(current_user)
    flash(_("You are signed out everywhere, on this device too. Log in again to continue."), "info")
    return redirect(url_for("members.login"), code=303)


@bp.get("/account")
@login_required
def account():
    membership = current_user.membership
    return render_template(
        "members/account.html",
        membership=membership,
        words=_(describe(membership.status, membership.cancel_at_period_end)) if membership else None,
        entitled=is_entitled(membership),
        grace_over=membership is not None and membership.status == MembershipStatus.PAST_DUE
        and not is_entitled(membership),
        date_label=_(paid_through_label(membership.status, membership.cancel_at_period_end)) if membership else None,
        start_words=_(START_WORDS[membership.status]) if membership and membership.status in START_WORDS else None,
        level=describe_level(membership.level) if membership and membership.level else None,
        paying=membership is not None and membership.status in PAYING,
        newsletter_words=list_words(membership.newsletter_status) if membership else None,
        newsletter_on_its_way=membership is not None
        and on_its_way(membership.newsletter_desired, membership.newsletter_status),
        form=ActionForm(),
        seat=organisations.seat_of(get_session(), current_user.id),
        admin_of=organisations.organisations_of_admin(get_session(), current_user),
    )


@bp.route("/account/email/confirm/<token>", methods=["GET", "POST"])
@login_required
def confirm_email(token: str):
    """GET only shows a button (mail scanners open links); the POST uses the link."""
    new_email = email_change.pending(token, current_user)
    if new_email is None:
        return render_template("members/email_invalid.html"), 400
    form = ConfirmWithPasswordForm()
    if not form.validate_on_submit():
        status = 422 if request.method == "POST" else 200
        return render_template("members/email_confirm.html", form=form, new_email=new_email), status
    if accounts.authenticate(current_user.email, form.password.data) is None:
        form.password.errors.append(_("That is not your current password."))
        return render_template("members/email_confirm.html", form=form, new_email=new_email), 422
    try:
        changed = email_change.confirm(token, current_user)
    except email_change.EmailInUse:
        flash(_("Another account already signs in with that address, so your sign-in email is unchanged."), "error")
        return redirect(url_for("members.account"), code=303)
    if changed is None:
        return render_template("members/email_invalid.html"), 400
    flash(_("You now sign in as %(email)s; DAWNS Digest goes there too.", email=new_email), "info")
    return redirect(url_for("members.account"), code=303)


@bp.route("/reset", methods=["GET", "POST"])
@_limit("RATELIMIT_RESET")
def reset_request():
    form = ResetRequestForm()
    if form.validate_on_submit():
        accounts.request_password_reset(form.email.data)
        return render_template("members/reset_sent.html"), 200
    status = 422 if request.method == "POST" else 200
    return render_template("members/reset_request.html", form=form), status


@bp.route("/reset/<token>", methods=["GET", "POST"])
@_limit("RATELIMIT_RESET")
def reset_password(token: str):
    if accounts.account_for_reset_token(token) is None:
        return render_template("members/reset_invalid.html"), 400
    form = ResetPasswordForm()
    if form.validate_on_submit():
        account = accounts.reset_password(token, form.password.data)
        if account is None:
            return render_template("members/reset_invalid.html"), 400
        flash(_("Your password has been changed. Please log in."), "info")
        return redirect(url_for("members.login"), code=303)
    status = 422 if request.method == "POST" else 200
    return render_template("members/reset_password.html", form=form, token=token), status
