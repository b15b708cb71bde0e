"""Billing pages that Stripe or the member reach: the Customer Portal hand-off."""
from __future__ import annotations

from flask import Blueprint, abort, current_app, flash, redirect, render_template, url_for
from flask_login import current_user, login_required

from ..members.forms import ActionForm
from . import services
from .gateway import BillingError

bp = Blueprint("billing", __name__)


@bp.post("/account/billing")
@login_required
def manage_billing():
    if not ActionForm().validate_on_submit():
        abort(400)
    return_url = current_app.config["PUBLIC_BASE_URL"] + url_for("members.account")
    try:
        url = services.portal_url(current_user, return_url)
    except BillingError as exc:
        return render_template("billing/unavailable.html", message=exc.message), 503
    if url is None:
        flash("There is no billing account yet: join first.", "info")
        return redirect(url_for("members.account"), code=303)
    return redirect(url, code=303)
