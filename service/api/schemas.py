"""marshmallow schemas for every JSON shape of the API (requests and responses)."""
from __future__ import annotations

from marshmallow import Schema, ValidationError, fields, validate, validates_schema

from ..domain.membership import MembershipStatus, Via
from ..membership.directory import CURSOR_PATTERN

STATUSES = [s.value for s in MembershipStatus]
VIAS = [v.value for v in Via]

# Text parameters never contain control characters (PostgreSQL text cannot hold NUL at all);
# the pattern is published in the OpenAPI document too.
PRINTABLE = validate.Regexp(r"^[^\x00-\x1f\x7f]*$", error="Control characters are not allowed.")


class NewsletterSchema(Schema):
    status = fields.String(required=True)
    synced_at = fields.AwareDateTime(allow_none=True, required=True, format="iso")


class LevelSchema(Schema):
    name = fields.String(required=True)
    amount = fields.Integer(required=True, metadata={"description": "Cents per interval"})
    currency = fields.String(required=True)
    interval = fields.String(required=True, validate=validate.OneOf(["month", "year"]))


class OrganisationRefSchema(Schema):
    name = fields.String(required=True)
    slug = fields.String(required=True)


def _via() -> fields.Field:
    return fields.String(allow_none=True, required=True, validate=validate.OneOf(VIAS), metadata={
        "description": "What entitles the member now: their own membership, a staff comp or an organisation's "
                       "seat; null when not entitled"})


def _organisation_ref() -> fields.Field:
    return fields.Nested(OrganisationRefSchema, allow_none=True, required=True, metadata={
        "description": "The organisation whose seat entitles the member (when `via` is `organisation`), else null"})


class MemberSchema(Schema):
    id = fields.Integer(required=True)
    email = fields.Email(required=True)
    name = fields.String(required=True)
    status = fields.String(required=True, validate=validate.OneOf(STATUSES))
    entitled = fields.Boolean(required=True)
    via = _via()
    organisation = _organisation_ref()
    paid_through = fields.AwareDateTime(allow_none=True, required=True, format="iso")
    cancel_at_period_end = fields.Boolean(required=True)
    stripe_customer_id = fields.String(allow_none=True, required=True)
    newsletter = fields.Nested(NewsletterSchema, required=True)
    level = fields.Nested(LevelSchema, allow_none=True, required=True)
    created_at = fields.AwareDateTime(required=True, format="iso")


class MemberListSchema(Schema):
    members = fields.List(fields.Nested(MemberSchema), required=True)
    page = fields.Integer(required=True)
    per_page = fields.Integer(required=True)
    next_cursor = fields.String(allow_none=True, required=True, metadata={
        "description": "Pass as `cursor` for the next page (keyset: fast at any depth); null on the last page"})
    total = fields.Integer(required=True, metadata={
        "description": "How many members match: exact when small, PostgreSQL's estimate when large"})
    total_is_estimate = fields.Boolean(required=True)


class MemberQuerySchema(Schema):
    email = fields.String(load_default="", validate=[validate.Length(max=320), PRINTABLE])
    q = fields.String(load_default="", validate=[validate.Length(max=200), PRINTABLE])
    status = fields.String(load_default=None, validate=validate.OneOf(STATUSES))
    entitled = fields.Boolean(load_default=None)
    sort = fields.String(load_default="newest", validate=validate.OneOf(["newest", "oldest"]))
    page = fields.Integer(load_default=1, validate=validate.Range(min=1, max=1_000_000))
    cursor = fields.String(load_default=None, validate=validate.Regexp(CURSOR_PATTERN), metadata={
        "description": "The `next_cursor` of the previous page; `page` is then ignored"})
    per_page = fields.Integer(load_default=50, validate=validate.Range(min=1, max=100))


class EntitlementQuerySchema(Schema):
    email = fields.String(load_default=None, validate=[validate.Length(min=1, max=320), PRINTABLE])
    member_id = fields.Integer(load_default=None, validate=validate.Range(min=1, max=2**31 - 1))

    @validates_schema
    def _exactly_one(self, data, **kwargs):
        if (data.get("email") is None) == (data.get("member_id") is None):
            raise ValidationError("Give exactly one of email or member_id.", "_schema")


class EntitlementSchema(Schema):
    entitled = fields.Boolean(required=True)
    status = fields.String(required=True, validate=validate.OneOf(STATUSES))
    paid_through = fields.AwareDateTime(allow_none=True, required=True, format="iso")
    level = fields.String(allow_none=True, required=True, metadata={"description": "The level's name, or null"})
    via = _via()
    organisation = _organisation_ref()


class SeatCountSchema(Schema):
    used = fields.Integer(required=True, metadata={"description": "Active seats"})
    total = fields.Integer(required=True, metadata={"description": "Seats bought (the subscription's quantity)"})
    suspended = fields.Integer(required=True, metadata={
        "description": "Seats suspended because the quantity went below the seats in use"})


class OrganisationSchema(Schema):
    id = fields.Integer(required=True)
    name = fields.String(required=True)
    slug = fields.String(required=True)
    status = fields.String(required=True, validate=validate.OneOf(STATUSES), metadata={
        "description": "The organisation's billing state, derived from its subscription like a member's"})
    seats = fields.Nested(SeatCountSchema, required=True)
    domains = fields.List(fields.String(), required=True, metadata={
        "description": "Email domains whose readers may claim a seat"})
    billing = fields.String(required=True, validate=validate.OneOf(["checkout", "invoice"]))
    paid_through = fields.AwareDateTime(allow_none=True, required=True, format="iso")
    created_at = fields.AwareDateTime(required=True, format="iso")


class SeatHolderSchema(Schema):
    member_id = fields.Integer(required=True)
    email = fields.Email(required=True)
    status = fields.String(required=True, validate=validate.OneOf(["active", "suspended"]))
    taken_at = fields.AwareDateTime(required=True, format="iso")


class OrganisationDetailSchema(OrganisationSchema):
    seat_holders = fields.List(fields.Nested(SeatHolderSchema), required=True, metadata={
        "description": "Readers holding a seat (active or suspended), oldest seat first"})


class OrganisationListSchema(Schema):
    organisations = fields.List(fields.Nested(OrganisationSchema), required=True)
    page = fields.Integer(required=True)
    per_page = fields.Integer(required=True)
    total = fields.Integer(required=True)


class OrganisationQuerySchema(Schema):
    page = fields.Integer(load_default=1, validate=validate.Range(min=1, max=1_000_000))
    per_page = fields.Integer(load_default=50, validate=validate.Range(min=1, max=100))


class ErrorBodySchema(Schema):
    code = fields.String(required=True)
    message = fields.String(required=True)
    fields_ = fields.Dict(data_key="fields", keys=fields.String(), values=fields.List(fields.String()))


class ErrorSchema(Schema):
    error = fields.Nested(ErrorBodySchema, required=True)


class PaywallTokenSchema(Schema):
    token = fields.String(required=True)
    expires_at = fields.AwareDateTime(required=True, format="iso")
