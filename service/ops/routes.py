from __future__ import annotations

from flask import Blueprint, jsonify

from .services import readiness

bp = Blueprint("ops", __name__)


@bp.get("/healthz")
def healthz():
    return jsonify(status="ok")


@bp.get("/readyz")
def readyz():
    ok, checks, queues = readiness()
    return jsonify(status="ok" if ok else "unavailable", checks=checks, queues=queues), (200 if ok else 503)
