"""Demo stand-ins for Stripe's hosted Checkout and Customer Portal.

Registered only when DEMO_CHECKOUT is on (the embedded default with localstripe). Each page is
clearly labelled as a demo; what it does happens in localstripe through the gateway, and the
membership then follows through the real code (success page, signed webhooks).
"""
from __future__ import annotations

from flask import Blueprint, abort, redirect, render_template, request, url_for
from flask_wtf import FlaskForm
from wtforms import StringField, SubmitField
from wtforms.validators import DataRequired, Length, Regexp

from ..billing.gateway import BillingError
from ..billing.lifecycle import sync_subscription
from ..db import get_session
from ..billing.runtime import get_gateway
from ..i18n import gettext as _, lazy_gettext as _l, money
from .gateway import DemoCardDeclined, DemoGateway

bp = Blueprint("demo", __name__, url_prefix="/demo")


class DemoCardForm(FlaskForm):
    number = StringField(
        _l("Card number"),
        default="4242 4242 4242 4242",
        validators=[DataRequired(_l("Enter a card number.")), Regexp(r"^[0-9 ]{12,23}$", message=_l("Digits only."))],
    )
    exp = StringField(
        _l("Expiry (MM/YY)"),
        default="12/34",
        validators=[DataRequired(_l("Enter the expiry.")),
                    Regexp(r"^(0[1-9]|1[0-2])/[0-9]{2}$", message=_l("Use MM/YY."))],
    )
    cvc = StringField(_l("CVC"), default="123", validators=[DataRequired(_l("Enter the CVC.")), Length(min=3, max=4)])


class DemoCancelForm(FlaskForm):
    submit_end = SubmitField(_l("Cancel at the end of the period"))
    submit_now = SubmitField(_l("Cancel now"))


def _demo_gateway() -> DemoGateway:
    gateway = get_gateway()
    assert isinstance(gateway, DemoGateway)  # this blueprint is registered only with the twin
    return gateway


def _price_words(data) -> str:
    plan = data.get("plan")
    if not plan:
        return ""
    each = money(plan["unit_amount"] * data["quantity"], plan["currency"])
    interval = plan["recurring"]["interval"]
    if interval == "year":
        return _("%(amount)s per year", amount=each)
    if interval == "month":
        return _("%(amount)s per month", amount=each)
    return _("%(amount)s per %(interval)s", amount=each, interval=interval)  # Stripe's "week", "day"


@bp.route("/checkout/<session_id>", methods=["GET", "POST"])
def checkout(session_id: str):
    gateway = _demo_gateway()
    try:
        data = gateway.demo_session(session_id)
    except BillingError:
        abort(404)
    data["price_words"] = _price_words(data)
    form = DemoCardForm()
    error = None
    if form.validate_on_submit():
        month, year = form.exp.data.split("/")
        card = {
            "number": form.number.data.replace(" ", ""),
            "exp_month": int(month),
            "exp_year": 2000 + int(year),
            "cvc": form.cvc.data,
        }
        try:
            gateway.pay(session_id, card)
        except DemoCardDeclined as exc:
            return render_template("billing/demo_checkout.html", form=form, data=data, error=exc.message,
                                   action=url_for("demo.checkout", session_id=session_id)), 402
        except BillingError as exc:
            error = exc.message
        else:
            return redirect(data["success_url"].replace("{CHECKOUT_SESSION_ID}", session_id), code=303)
    status = 422 if request.method == "POST" else 200
    return render_template("billing/demo_checkout.html", form=form, data=data, error=error,
                           action=url_for("demo.checkout", session_id=session_id)), status


@bp.route("/portal/<token>", methods=["GET", "POST"])
def portal(token: str):
    gateway = _demo_gateway()
    try:
        data = gateway.decode_portal(token)
    except BillingError:
        abort(404)
    subs = gateway.customer_subscriptions(data["customer"])
    form = DemoCancelForm()
    error = None
    if form.validate_on_submit():
        live = [s for s in subs if s["status"] not in ("canceled", "incomplete_expired")]
        try:
            for sub in live:
                gateway.cancel_subscription(sub["id"], at_period_end=bool(form.submit_end.data))
                # localstripe sends no customer.subscription.updated for cancel_at_period_end, which
                # Stripe would: read the subscription back through the real path (as reconcile does).
                session = get_session()
                sync_subscription(session, gateway, sub["id"], data["customer"])
                session.commit()
        except BillingError as exc:
            error = exc.message
        else:
            return redirect(data["return_url"], code=303)
    return render_template("billing/demo_portal.html", form=form, subs=subs, data=data, error=error)
