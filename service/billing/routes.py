"""Billing routes: the Stripe webhook and the Customer Portal hand-off."""
from __future__ import annotations

import logging

from flask import Blueprint, abort, current_app, flash, jsonify, redirect, render_template, request, url_for
from flask_login import current_user, login_required
from sqlalchemy.exc import SQLAlchemyError

from .. import metrics
from ..errors import json_error
from ..logs import log_context
from ..extensions import csrf
from ..forms import ActionForm
from ..i18n import gettext as _
from ..db import get_engine
from ..urls import absolute_url
from . import checkout, inbox
from .gateway import BillingError
from .signatures import InvalidEvent, verify_event

log = logging.getLogger("service.billing.webhooks")

bp = Blueprint("billing", __name__)


@bp.get("/account/billing/fix")
@login_required
def fix_payment():
    """The payment-failed mail's link. A Portal session expires within minutes, so the mail
    links here; the button makes a fresh one (POST /account/billing) when the reader clicks."""
    membership = current_user.membership
    return render_template("billing/fix.html", form=ActionForm(),
                           has_billing=checkout.current_customer_id(current_user) is not None,
                           status=membership.status.value if membership else None)


@bp.post("/account/billing")
@login_required
def manage_billing():
    if not ActionForm().validate_on_submit():
        abort(400)
    return_url = absolute_url("members.account")
    try:
        url = checkout.portal_url(current_user, return_url)
    except BillingError as exc:
        return render_template("billing/unavailable.html", message=exc.message), 503
    if url is None:
        flash(_("There is no billing account yet: join first."), "info")
        return redirect(url_for("members.account"), code=303)
    return redirect(url, code=303)


@bp.post("/stripe/webhook")
@csrf.exempt
def stripe_webhook():
    """Verify, store once, answer 200: the worker applies it. 400 stores nothing; 503 only when
    the event could not be stored (the database is down), so that Stripe retries it."""
    try:
        event = verify_event(
            request.get_data(cache=False),
            request.headers.get("Stripe-Signature"),
            current_app.config["STRIPE_WEBHOOK_SECRET"],
        )
    except InvalidEvent as exc:
        log.warning("webhook rejected: %s", exc.reason)  # never the body
        metrics.webhook_delivery(None, "bad_signature")
        return json_error(400, exc.reason, "invalid_event")
    with log_context(stripe_event_id=event["id"]):
        try:
            new = inbox.store(get_engine(), event)
        except SQLAlchemyError as exc:
            log.error("webhook %s (%s) not stored, Stripe will retry: %s", event["id"], event["type"],
                      exc.__class__.__name__)
            metrics.webhook_delivery(event["type"], "unavailable")
            return json_error(503, "The event could not be stored; retry later.", "unavailable")
        log.info("webhook %s (%s) %s", event["id"], event["type"], "stored" if new else "was a duplicate")
        metrics.webhook_delivery(event["type"], "stored" if new else "duplicate")
    return jsonify(received=True, duplicate=not new)
