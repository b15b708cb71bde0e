"""Configuration from the environment (and an optional `.env`).

Every name read here is part of the contract in SPEC.md and is documented in `.env.example`.
"""
from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from dotenv import load_dotenv

PROJECT_ROOT = Path(__file__).resolve().parent.parent
INSTANCE_DIR = PROJECT_ROOT / "instance"

# Stripe API version the service is written against. Pinned so that a Stripe account upgrade
# never changes payload shapes under us (https://docs.stripe.com/api/versioning).
DEFAULT_STRIPE_API_VERSION = "2025-03-31.basil"


def _bool(value: str | None, default: bool = False) -> bool:
    if value is None or value == "":
        return default
    return value.strip().lower() in {"1", "true", "yes", "on"}


def _int(value: str | None, default: int) -> int:
    if value is None or value.strip() == "":
        return default
    return int(value)


def from_environment(env_file: bool = True) -> dict[str, Any]:
    """Build the config mapping; values set in the process environment win over `.env`."""
    if env_file:
        load_dotenv(PROJECT_ROOT / ".env", override=False)
    env = os.environ
    default_db = f"sqlite:///{INSTANCE_DIR / 'membership.db'}"
    public_base_url = env.get("PUBLIC_BASE_URL", "http://127.0.0.1:5000").rstrip("/")
    stripe_secret_key = env.get("STRIPE_SECRET_KEY", "")
    return {
        "SECRET_KEY": env.get("SECRET_KEY", ""),
        "DATABASE_URL": env.get("DATABASE_URL") or default_db,
        "PUBLIC_BASE_URL": public_base_url,
        # Stripe
        "STRIPE_SECRET_KEY": stripe_secret_key,
        "STRIPE_WEBHOOK_SECRET": env.get("STRIPE_WEBHOOK_SECRET", ""),
        "STRIPE_PRICE_ID": env.get("STRIPE_PRICE_ID", ""),
        # The Product every membership price belongs to; unset: read once from STRIPE_PRICE_ID's price.
        "STRIPE_PRODUCT_ID": env.get("STRIPE_PRODUCT_ID", ""),
        # Seconds a process trusts the catalogue it read (levels change rarely; recomputes are many).
        "CATALOGUE_CACHE_SECONDS": float(env.get("CATALOGUE_CACHE_SECONDS", "30")),
        # Days a past-due membership still entitles after its paid-through date (Stripe retries).
        "PAST_DUE_GRACE_DAYS": _int(env.get("PAST_DUE_GRACE_DAYS"), 14),
        "STRIPE_API_BASE": env.get("STRIPE_API_BASE", ""),
        "STRIPE_API_VERSION": env.get("STRIPE_API_VERSION") or DEFAULT_STRIPE_API_VERSION,
        "STRIPE_TIMEOUT": float(env.get("STRIPE_TIMEOUT", "10")),
        "STRIPE_MAX_NETWORK_RETRIES": _int(env.get("STRIPE_MAX_NETWORK_RETRIES"), 2),
        "STRIPE_DASHBOARD_URL": env.get("STRIPE_DASHBOARD_URL", "https://dashboard.stripe.com"),
        # Demo checkout: only when the embedded localstripe stand-in is in use.
        "DEMO_CHECKOUT": _bool(env.get("DEMO_CHECKOUT")),
        # Newsletter
        "NEWSLETTER_PROVIDER": env.get("NEWSLETTER_PROVIDER", "log"),
        "MAILCHIMP_API_KEY": env.get("MAILCHIMP_API_KEY", ""),
        "MAILCHIMP_SERVER_PREFIX": env.get("MAILCHIMP_SERVER_PREFIX", ""),
        "MAILCHIMP_LIST_ID": env.get("MAILCHIMP_LIST_ID", ""),
        "MAILCHIMP_API_BASE": env.get("MAILCHIMP_API_BASE", ""),
        "NEWSLETTER_ON_LAPSE": env.get("NEWSLETTER_ON_LAPSE", "unsubscribe"),
        "MAILCHIMP_WEBHOOK_SECRET": env.get("MAILCHIMP_WEBHOOK_SECRET", ""),
        "NEWSLETTER_LOG_PATH": env.get("NEWSLETTER_LOG_PATH") or str(INSTANCE_DIR / "newsletter-log.jsonl"),
        # Seconds before a provider call from the worker times out.
        "NEWSLETTER_TIMEOUT": float(env.get("NEWSLETTER_TIMEOUT", "10")),
        "NEWSLETTER_MAX_ATTEMPTS": _int(env.get("NEWSLETTER_MAX_ATTEMPTS"), 8),
        "NEWSLETTER_BACKOFF_BASE": float(env.get("NEWSLETTER_BACKOFF_BASE", "30")),
        "NEWSLETTER_BACKOFF_MAX": float(env.get("NEWSLETTER_BACKOFF_MAX", "21600")),
        "NEWSLETTER_LEASE_SECONDS": float(env.get("NEWSLETTER_LEASE_SECONDS", "120")),
        "NEWSLETTER_POLL_SECONDS": float(env.get("NEWSLETTER_POLL_SECONDS", "2")),
        # The worker: Stripe events (applied with retries), newsletter and export queues.
        "STRIPE_EVENT_MAX_ATTEMPTS": _int(env.get("STRIPE_EVENT_MAX_ATTEMPTS"), 12),
        "STRIPE_EVENT_BACKOFF_BASE": float(env.get("STRIPE_EVENT_BACKOFF_BASE", "15")),
        "STRIPE_EVENT_BACKOFF_MAX": float(env.get("STRIPE_EVENT_BACKOFF_MAX", "3600")),
        "STRIPE_EVENT_LEASE_SECONDS": float(env.get("STRIPE_EVENT_LEASE_SECONDS", "120")),
        "WORKER_POLL_SECONDS": float(env.get("WORKER_POLL_SECONDS", "5")),
        "WORKER_THREADS": max(1, min(16, _int(env.get("WORKER_THREADS"), 2))),
        "EXPORT_DIR": env.get("EXPORT_DIR") or str(INSTANCE_DIR / "exports"),
        "EXPORT_TTL_HOURS": float(env.get("EXPORT_TTL_HOURS", "24")),
        # Mail
        "MAIL_BACKEND": env.get("MAIL_BACKEND", "log"),
        "MAIL_FROM": env.get("MAIL_FROM", "DAWNS Membership <membership@localhost>"),
        "SMTP_HOST": env.get("SMTP_HOST", "localhost"),
        "SMTP_PORT": _int(env.get("SMTP_PORT"), 587),
        "SMTP_USERNAME": env.get("SMTP_USERNAME", ""),
        "SMTP_PASSWORD": env.get("SMTP_PASSWORD", ""),
        "SMTP_STARTTLS": _bool(env.get("SMTP_STARTTLS"), True),
        "SMTP_TIMEOUT": float(env.get("SMTP_TIMEOUT", "10")),
        # The mail outbox, delivered by the worker (retries with backoff, then `failed`).
        "MAIL_LOG_PATH": env.get("MAIL_LOG_PATH") or str(INSTANCE_DIR / "mail-log.jsonl"),
        "MAIL_MAX_ATTEMPTS": _int(env.get("MAIL_MAX_ATTEMPTS"), 10),
        "MAIL_BACKOFF_BASE": float(env.get("MAIL_BACKOFF_BASE", "30")),
        "MAIL_BACKOFF_MAX": float(env.get("MAIL_BACKOFF_MAX", "3600")),
        "MAIL_LEASE_SECONDS": float(env.get("MAIL_LEASE_SECONDS", "120")),
        # Also try each message right after its commit (after the response), in the web process;
        # unset: only when TESTING. The worker delivers (and retries) either way.
        "MAIL_DELIVER_INLINE": _bool(env["MAIL_DELIVER_INLINE"]) if env.get("MAIL_DELIVER_INLINE") else None,
        # Paywall entitlement tokens (ES256 JWT).
        "PAYWALL_JWT_PRIVATE_KEY": env.get("PAYWALL_JWT_PRIVATE_KEY", ""),
        "PAYWALL_JWT_KID": env.get("PAYWALL_JWT_KID", ""),
        "PAYWALL_JWT_PREVIOUS_KEYS": env.get("PAYWALL_JWT_PREVIOUS_KEYS", ""),
        "PAYWALL_TOKEN_TTL": _int(env.get("PAYWALL_TOKEN_TTL"), 300),
        "PAYWALL_CORS_ORIGINS": [o.strip().rstrip("/") for o in env.get("PAYWALL_CORS_ORIGINS", "").split(",") if o.strip()],
        # Security and limits
        "RATELIMIT_STORAGE_URI": env.get("RATELIMIT_STORAGE_URI", "memory://"),
        "RATELIMIT_LOGIN": env.get("RATELIMIT_LOGIN", "10 per minute"),
        "RATELIMIT_JOIN": env.get("RATELIMIT_JOIN", "60 per hour"),
        "RATELIMIT_RESET": env.get("RATELIMIT_RESET", "5 per hour"),
        # Asking for a sign-in link: per IP and, separately, per address.
        "RATELIMIT_SIGNIN_LINK": env.get("RATELIMIT_SIGNIN_LINK", "5 per hour"),
        "RATELIMIT_SUCCESS": env.get("RATELIMIT_SUCCESS", "30 per minute"),
        "RATELIMIT_API": env.get("RATELIMIT_API", "6000 per minute"),
        # The paywall route remembers a live token this long (a revocation reaches it this late).
        "API_TOKEN_CACHE_SECONDS": float(env.get("API_TOKEN_CACHE_SECONDS", "5")),
        "PASSWORD_RESET_MAX_AGE": _int(env.get("PASSWORD_RESET_MAX_AGE"), 3600),
        "SESSION_COOKIE_SECURE": public_base_url.startswith("https://"),
        "REMEMBER_COOKIE_SECURE": public_base_url.startswith("https://"),
        "TRUST_PROXY_HOPS": _int(env.get("TRUST_PROXY_HOPS"), 0),
        # Operations: log lines as JSON (production) or readable text (`make run`); who may
        # scrape /metrics without a token (comma-separated IPs or CIDRs; empty: token only).
        "LOG_FORMAT": (env.get("LOG_FORMAT") or "json").strip().lower(),
        "METRICS_ALLOWED_IPS": [a.strip() for a in env.get("METRICS_ALLOWED_IPS", "").split(",") if a.strip()],
    }
