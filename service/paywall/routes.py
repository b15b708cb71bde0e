"""GET /paywall/token (logged-in reader) and GET /.well-known/jwks.json (public)."""
from __future__ import annotations

from datetime import timedelta

import jwt
from flask import Blueprint, Response, current_app, jsonify, request
from flask_login import current_user

from ..db import utcnow
from ..errors import json_error
from ..membership.directory import member_standing, organisation_ref
from .keys import ALG, KeySet

bp = Blueprint("paywall", __name__)

AUDIENCE = "dawns-paywall"


def keyset() -> KeySet:
    return current_app.extensions["paywall_keys"]


@bp.get("/paywall/token")
def token():
    if not current_user.is_authenticated:
        return json_error(401, "Log in to get an entitlement token.")
    membership = current_user.membership
    now = utcnow().replace(microsecond=0)
    expires = now + timedelta(seconds=current_app.config["PAYWALL_TOKEN_TTL"])
    status = membership.status.value if membership else "none"
    entitled, via = member_standing(membership)
    organisation = membership.organisation if membership and via else None
    claims = {
        "iss": current_app.config["PUBLIC_BASE_URL"],
        "aud": AUDIENCE,
        "sub": str(current_user.id),
        "status": status,
        "entitled": entitled,
        "level": membership.level_name if membership else None,
        # The same source as the entitlement answer: "membership" | "organisation" | "comp" | null.
        "via": via.value if via else None,
        "organisation": organisation_ref(via, organisation.name, organisation.slug) if organisation else None,
        "iat": int(now.timestamp()),
        "exp": int(expires.timestamp()),
    }
    keys = keyset()
    encoded = jwt.encode(claims, keys.private_key, algorithm=ALG, headers={"kid": keys.kid})
    return jsonify(token=encoded, expires_at=expires.isoformat())


@bp.get("/.well-known/jwks.json")
def jwks():
    resp = jsonify(keyset().jwks())
    resp.headers["Cache-Control"] = "public, max-age=300"
    return resp


def init_cors(app) -> None:
    """CORS only for the configured publisher origins, only on the paywall routes."""

    @app.after_request
    def _cors(response: Response) -> Response:
        origin = request.headers.get("Origin")
        allowed = app.config["PAYWALL_CORS_ORIGINS"]
        if origin and origin in allowed and request.path in ("/paywall/token", "/.well-known/jwks.json"):
            response.headers["Access-Control-Allow-Origin"] = origin
            response.headers["Vary"] = "Origin"
            if request.path == "/paywall/token":
                response.headers["Access-Control-Allow-Credentials"] = "true"
        return response
