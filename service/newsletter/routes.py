"""DAWNS Digest routes: the member's toggle and Mailchimp's webhooks."""
from __future__ import annotations

import hmac

from flask import Blueprint, abort, current_app, flash, redirect, request, url_for
from flask_login import current_user, login_required

from ..errors import json_error
from ..extensions import csrf
from ..forms import ActionForm
from ..i18n import gettext as _
from . import services

bp = Blueprint("newsletter", __name__)


@bp.post("/account/newsletter")
@login_required
def toggle():
    if not ActionForm().validate_on_submit():
        abort(400)
    wanted = request.form.get("subscribe") == "1"
    services.set_opt_in(current_user, wanted)
    flash(_("DAWNS Digest is on: welcome aboard.") if wanted else _("You will no longer receive DAWNS Digest."), "info")
    return redirect(url_for("members.account"), code=303)


@bp.route("/newsletter/mailchimp/webhook/<secret>", methods=["GET", "POST"])
@csrf.exempt
def mailchimp_webhook(secret: str):
    """Protected by a secret in the URL (Mailchimp webhooks are not signed)."""
    expected = current_app.config["MAILCHIMP_WEBHOOK_SECRET"]
    if not expected or not hmac.compare_digest(secret.encode(), expected.encode()):
        return json_error(404, "Not found.")
    if request.method == "GET":
        return "", 200  # Mailchimp validates the URL with a GET when the webhook is created
    kind = request.form.get("type", "")
    data = {k[5:-1]: v for k, v in request.form.items() if k.startswith("data[") and k.endswith("]")
            and "][" not in k}
    merges = {k[len("data[merges]["):-1]: v for k, v in request.form.items() if k.startswith("data[merges][")}
    if merges:
        data["merges"] = merges
    if not kind:
        return json_error(400, "Missing type.")
    outcome = services.mailchimp_event(kind, data)
    return {"received": True, "outcome": outcome}, 200
