"""The OpenAPI document validates, matches the responses, and Schemathesis finds no server error
and no response that breaks it."""
from __future__ import annotations

import schemathesis
from hypothesis import HealthCheck, settings
from jsonschema import Draft4Validator
from openapi_spec_validator import validate as validate_openapi

from service.domain.membership import MembershipStatus as S

from ..support.factories import make_account
from .organisation_rows import make_organisation
from ..support.staff import api_token

ALL_READ = ("entitlements:read", "members:read", "organisations:read")


def test_openapi_document_is_valid_openapi_3(client):
    doc = client.get("/api/v1/openapi.json").json
    assert doc["openapi"].startswith("3.0")
    assert set(doc["paths"]) == {"/api/v1/members", "/api/v1/members/{member_id}", "/api/v1/entitlements",
                                 "/api/v1/organisations", "/api/v1/organisations/{organisation_id}"}
    validate_openapi(doc)  # raises on any violation of the OpenAPI 3.0 specification
    schema = schemathesis.openapi.from_dict(doc)
    assert len(list(schema.get_all_operations())) == 5
    for name, component in doc["components"]["schemas"].items():
        Draft4Validator.check_schema(component)


def test_documented_schemas_match_real_responses(app, client):
    token = api_token(app, scopes=ALL_READ)
    member = make_account(app, status=S.ACTIVE)
    seated = make_account(app, email="seat@example.org")
    organisation = make_organisation(app, seats=[seated])
    doc = client.get("/api/v1/openapi.json").json
    headers = {"Authorization": f"Bearer {token}"}
    for path, ref in ((f"/api/v1/members/{member}", "Member"), ("/api/v1/members", "MemberList"),
                      (f"/api/v1/members/{seated}", "Member"),
                      (f"/api/v1/entitlements?member_id={member}", "Entitlement"),
                      (f"/api/v1/entitlements?member_id={seated}", "Entitlement"),
                      ("/api/v1/organisations", "OrganisationList"),
                      (f"/api/v1/organisations/{organisation}", "OrganisationDetail"),
                      ("/api/v1/organisations/999999", "Error"),
                      ("/api/v1/entitlements", "Error")):
        body = client.get(path, headers=headers).json
        resolver_doc = {**doc["components"]["schemas"][ref], "components": doc["components"]}
        Draft4Validator(_with_refs(resolver_doc, doc)).validate(body)


def _with_refs(schema, doc):
    """Inline #/components/schemas refs (the document uses OpenAPI-style refs)."""
    if isinstance(schema, dict):
        if "$ref" in schema:
            return _with_refs(doc["components"]["schemas"][schema["$ref"].rsplit("/", 1)[1]], doc)
        out = {k: _with_refs(v, doc) for k, v in schema.items() if k != "components"}
        if out.get("nullable"):
            out.pop("nullable")
            out = {"anyOf": [out, {"type": "null"}]}
        return out
    if isinstance(schema, list):
        return [_with_refs(v, doc) for v in schema]
    return schema


def test_schemathesis_finds_no_server_error_and_no_schema_violation(app):
    """Every operation, with generated valid and invalid inputs, through the real WSGI app."""
    from hypothesis import given

    token = api_token(app, name="schemathesis", scopes=ALL_READ)
    for i, status in enumerate(S):
        make_account(app, email=f"s{i}@example.org", name=f"Schema {i}", status=status)
    make_organisation(app, seats=[make_account(app, email="seat@example.org")])
    schema = schemathesis.openapi.from_wsgi("/api/v1/openapi.json", app)
    operations = [result.ok() for result in schema.get_all_operations()]
    assert len(operations) == 5
    for operation in operations:

        @given(case=operation.as_strategy())
        @settings(max_examples=40, deadline=None, database=None,
                  suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much])
        def run(case):
            # Every check, "schema-valid data is accepted" included: the document says "exactly
            # one of email or member_id" with a oneOf over one exploded query object.
            case.call_and_validate(headers={"Authorization": f"Bearer {token}"})

        run()


def test_every_status_a_route_can_answer_is_documented(client):
    doc = client.get("/api/v1/openapi.json").json
    responses = {path: set(ops["get"]["responses"]) for path, ops in doc["paths"].items()}
    assert responses == {
        "/api/v1/members": {"200", "400", "401", "403", "414", "422", "429", "503"},
        "/api/v1/members/{member_id}": {"200", "400", "401", "403", "404", "414", "429", "503"},
        # The paywall check is never rate limited.
        "/api/v1/entitlements": {"200", "400", "401", "403", "404", "414", "422", "503"},
        "/api/v1/organisations": {"200", "400", "401", "403", "414", "422", "429", "503"},
        "/api/v1/organisations/{organisation_id}": {"200", "400", "401", "403", "404", "414", "429", "503"},
    }  # 414: gunicorn refuses a request line over 4,094 bytes before the service sees it
