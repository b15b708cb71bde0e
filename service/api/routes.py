"""/api/v1: members and organisations. Bearer tokens; JSON errors only.

The paywall's entitlement answer (GET /api/v1/entitlements) is served by `fastpath.py`, in
front of Flask: it is asked on every premium page and must cost little more than a bare route.
"""
from __future__ import annotations

from functools import wraps

from flask import Blueprint, current_app, g, jsonify, request
from marshmallow import ValidationError

from ..db import get_engine, get_session
from ..domain.membership import MembershipStatus
from ..errors import json_error
from ..extensions import csrf, limiter
from ..accounts import api_tokens
from ..membership import directory
from . import auth
from .schemas import (
    MemberListSchema,
    MemberQuerySchema,
    MemberSchema,
    OrganisationDetailSchema,
    OrganisationListSchema,
    OrganisationQuerySchema,
)

bp = Blueprint("api", __name__, url_prefix="/api/v1")
csrf.exempt(bp)

MAX_ID = 2**31 - 1

_member = MemberSchema()
_member_list = MemberListSchema()
_member_query = MemberQuerySchema()
_organisation = OrganisationDetailSchema()
_organisation_list = OrganisationListSchema()
_organisation_query = OrganisationQuerySchema()


def require_scope(scope: str):
    """Every API route in Flask: a live token with `scope` (rules and errors in auth.py)."""

    def decorate(view):
        @wraps(view)
        def wrapper(*args, **kwargs):
            verdict = auth.authenticate(get_session(), request.headers.get("Authorization"), scope)
            if isinstance(verdict, auth.Denied):
                return json_error(verdict.status, verdict.message, verdict.code, headers=verdict.headers)
            g.api_caller = verdict
            get_session().rollback()  # end the read (SQLite: its write lock) before noting the use
            api_tokens.note_use(verdict.token_id, get_engine())
            return view(*args, **kwargs)

        return wrapper

    return decorate


def _token_key() -> str:
    # By token id: no token, raw or hashed, ever becomes part of a rate-limit key.
    return f"api-token:{g.api_caller.token_id}"


def _api_limit():
    return limiter.limit(lambda: current_app.config["RATELIMIT_API"], key_func=_token_key)


def _load(schema, data):
    try:
        return schema.load(data), None
    except ValidationError as exc:
        messages = exc.normalized_messages()
        resp, status = json_error(422, "Invalid query parameters.", "validation_error")
        body = resp.get_json()
        body["error"]["fields"] = {k: v if isinstance(v, list) else [str(v)] for k, v in messages.items()}
        return None, (jsonify(body), status)


@bp.get("/members")
@require_scope(auth.MEMBERS_READ)
@_api_limit()
def list_members():
    args, error = _load(_member_query, request.args.to_dict())
    if error:
        return error
    f = directory.MemberFilter(q=args["q"], email=args["email"],
                               status=MembershipStatus(args["status"]) if args["status"] else None,
                               entitled=args["entitled"], sort=args["sort"])
    try:
        result = directory.search(get_session(), f, page=args["page"], cursor=args["cursor"],
                                  per_page=args["per_page"])
    except directory.BadCursor:
        return json_error(422, "Invalid query parameters.", "validation_error",
                          fields={"cursor": ["Not a cursor of this list: use next_cursor as given."]})
    return _member_list.dump({"members": result.rows, "page": args["page"], "per_page": args["per_page"],
                              "next_cursor": result.next_cursor, "total": result.estimate,
                              "total_is_estimate": not result.exact})


@bp.get("/members/<int:member_id>")
@require_scope(auth.MEMBERS_READ)
@_api_limit()
def get_member(member_id: int):
    # Ids are 32-bit in the database; a larger number names no member (and must not reach SQL).
    member = directory.get_member(get_session(), member_id) if 0 < member_id <= MAX_ID else None
    if member is None:
        return json_error(404, f"No member with id {member_id}.")
    return _member.dump(member)


@bp.get("/organisations")
@require_scope(auth.ORGANISATIONS_READ)
@_api_limit()
def list_organisations():
    args, error = _load(_organisation_query, request.args.to_dict())
    if error:
        return error
    result = directory.list_organisations(get_session(), page=args["page"], per_page=args["per_page"])
    return _organisation_list.dump({"organisations": result.rows, "page": result.page,
                                    "per_page": result.per_page, "total": result.total})


@bp.get("/organisations/<int:organisation_id>")
@require_scope(auth.ORGANISATIONS_READ)
@_api_limit()
def get_organisation(organisation_id: int):
    org = (directory.get_organisation(get_session(), organisation_id)
           if 0 < organisation_id <= MAX_ID else None)
    if org is None:
        return json_error(404, f"No organisation with id {organisation_id}.")
    return _organisation.dump(org)


@bp.get("/openapi.json")
def openapi():
    from .openapi import document

    return jsonify(document())


