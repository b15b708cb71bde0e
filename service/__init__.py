"""The DAWNS membership and paywall service."""
from __future__ import annotations

import logging
import secrets
from typing import Any, Mapping

from flask import Flask
from werkzeug.middleware.proxy_fix import ProxyFix

from . import config as config_module

log = logging.getLogger("service")


def create_app(test_config: Mapping[str, Any] | None = None) -> Flask:
    """Defaults from the environment (and `.env`), then the test mapping."""
    app = Flask(__name__, instance_path=str(config_module.INSTANCE_DIR))
    app.config.update(config_module.from_environment(env_file=test_config is None))
    app.config.update(
        MAX_CONTENT_LENGTH=1024 * 1024,
        SESSION_COOKIE_HTTPONLY=True,
        SESSION_COOKIE_SAMESITE="Lax",
        REMEMBER_COOKIE_HTTPONLY=True,
        REMEMBER_COOKIE_SAMESITE="Lax",
        WTF_CSRF_TIME_LIMIT=None,
        RATELIMIT_HEADERS_ENABLED=True,
    )
    if test_config:
        app.config.update(test_config)
    from . import logs

    logs.init_app(app)  # first: everything after logs through the one set-up (LOG_FORMAT)
    _ensure_secret_key(app)
    _refuse_unsafe_production(app)
    if app.config["TRUST_PROXY_HOPS"]:
        hops = app.config["TRUST_PROXY_HOPS"]
        app.wsgi_app = ProxyFix(app.wsgi_app, x_for=hops, x_proto=hops, x_host=hops)  # type: ignore[method-assign]

    register_extensions(app)
    register_template_globals(app)
    register_blueprints(app)
    register_errorhandlers(app)
    register_commands(app)
    from .api import fastpath

    fastpath.init_app(app)  # the paywall's entitlement answer, in front of Flask
    logs.wrap_wsgi(app)  # outermost: every request (the fast path too) has a request id
    return app


def _ensure_secret_key(app: Flask) -> None:
    if app.config.get("SECRET_KEY"):
        return
    if app.config["PUBLIC_BASE_URL"].startswith("https://"):
        raise RuntimeError("SECRET_KEY must be set in production (PUBLIC_BASE_URL is https)")
    # Development only: a stable key in the instance folder, so sessions survive restarts.
    config_module.INSTANCE_DIR.mkdir(parents=True, exist_ok=True)
    key_file = config_module.INSTANCE_DIR / "secret_key"
    if not key_file.exists():
        key_file.write_text(secrets.token_hex(32))
        key_file.chmod(0o600)
    app.config["SECRET_KEY"] = key_file.read_text().strip()


class UnsafeSettings(RuntimeError):
    """A setting that must not be used in production; the message names it and says why."""


def _refuse_unsafe_production(app: Flask) -> None:
    """With an https PUBLIC_BASE_URL (production), refuse what only development may use."""
    if not app.config["PUBLIC_BASE_URL"].startswith("https://"):
        return
    if app.config["MAIL_BACKEND"] == "log":
        raise UnsafeSettings("MAIL_BACKEND=log is refused in production (PUBLIC_BASE_URL is https): password "
                             "reset and sign-in links would sit in the logs. Set MAIL_BACKEND=smtp and SMTP_*.")
    if app.config["DEMO_CHECKOUT"]:
        raise UnsafeSettings("DEMO_CHECKOUT is refused in production (PUBLIC_BASE_URL is https): its pages "
                             "take test cards instead of Stripe Checkout. Unset DEMO_CHECKOUT.")
    if app.config["NEWSLETTER_PROVIDER"] == "log":
        app.config["NEWSLETTER_GOING_NOWHERE"] = True
        log.warning("NEWSLETTER_PROVIDER=log in production (PUBLIC_BASE_URL is https): DAWNS Digest "
                    "enrollments are only logged, not sent to Mailchimp")


def register_extensions(app: Flask) -> None:
    from . import db, i18n, mail, security
    from .extensions import csrf, limiter, login_manager
    from .newsletter import runtime as newsletter_runtime
    from .paywall.keys import load_keys
    from .paywall.routes import init_cors

    db.init_app(app)
    csrf.init_app(app)
    login_manager.init_app(app)
    limiter.init_app(app)
    security.init_app(app)
    mail.init_app(app)
    i18n.init_app(app)
    app.extensions["billing_gateway"] = build_gateway(app.config)
    newsletter_runtime.init_app(app)
    app.extensions["paywall_keys"] = load_keys(app.config)
    init_cors(app)

    @login_manager.user_loader
    def _load(session_id: str):
        import hmac

        from .accounts.services import get_account, session_is_live
        from .models import session_fingerprint

        account_id, _, fingerprint = session_id.partition(":")
        if not account_id.isdigit() or not fingerprint:
            return None
        account = get_account(int(account_id))
        if account is None or not hmac.compare_digest(fingerprint, session_fingerprint(account)):
            return None  # password or role changed since this session began
        if not session_is_live(account.id):
            return None  # logged out, signed out everywhere, or ended by staff
        return account


def build_gateway(config: Mapping[str, Any]):
    """The one Stripe gateway: Stripe itself (or any server that speaks its API), or, for the
    embedded default, the twin that turns Checkout and the Portal into demo pages."""
    from .billing.gateway import BillingGateway, StripeGateway

    common: dict[str, Any] = dict(
        api_key=config["STRIPE_SECRET_KEY"],
        api_version=config["STRIPE_API_VERSION"],
        api_base=config["STRIPE_API_BASE"] or None,
        timeout=config["STRIPE_TIMEOUT"],
        max_network_retries=config["STRIPE_MAX_NETWORK_RETRIES"],
    )
    gateway: BillingGateway
    if config["DEMO_CHECKOUT"]:
        from .demo.gateway import DemoGateway

        gateway = DemoGateway(secret_key=config["SECRET_KEY"], public_base_url=config["PUBLIC_BASE_URL"], **common)
    else:
        gateway = StripeGateway(**common)
    return gateway


def register_template_globals(app: Flask) -> None:
    from .domain.money import format_amount, per_interval

    app.jinja_env.globals.update(format_amount=format_amount, per_interval=per_interval)


def register_blueprints(app: Flask) -> None:
    from .api.metrics import bp as metrics_bp
    from .api.routes import bp as api_bp
    from .billing.routes import bp as billing_bp
    from .members.routes import bp as members_bp
    from .newsletter.routes import bp as newsletter_bp
    from .ops.routes import bp as ops_bp
    from .paywall.routes import bp as paywall_bp
    from .organisations.routes import bp as organisations_bp
    from .staff.routes import bp as staff_bp

    app.register_blueprint(members_bp)
    app.register_blueprint(organisations_bp)
    app.register_blueprint(billing_bp)
    app.register_blueprint(newsletter_bp)
    app.register_blueprint(staff_bp)
    app.register_blueprint(ops_bp)
    app.register_blueprint(api_bp)
    app.register_blueprint(metrics_bp)  # /metrics (Prometheus)
    app.register_blueprint(paywall_bp)
    if app.config["DEMO_CHECKOUT"]:
        from .demo.routes import bp as demo_bp

        app.register_blueprint(demo_bp)


def register_errorhandlers(app: Flask) -> None:
    from .errors import init_app

    init_app(app)


def register_commands(app: Flask) -> None:
    """Module-level click groups, one per topic (SPEC "Contract": `flask --app wsgi ...`)."""
    from .accounts.commands import tokens
    from .billing.commands import stripe_group
    from .billing.import_commands import members
    from .commands import db
    from .devserver import demo
    from .membership.commands import levels
    from .newsletter.commands import newsletter
    from .paywall.commands import paywall
    from .staff.commands import staff
    from .worker import worker

    for command in (db, staff, tokens, levels, stripe_group, members, newsletter, paywall, demo, worker):
        app.cli.add_command(command)
