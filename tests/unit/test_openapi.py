"""The OpenAPI document against the app's routes and the OpenAPI 3.1 schema."""

from __future__ import annotations

import json

import jsonschema_rs
from aiohttp.test_utils import make_mocked_request
from schemathesis.specs.openapi.definitions import OPENAPI_31

from api.app import create_app
from api.openapi import document, serve
from api.routes import gateway, governance
from schemas.registry import record_fields
from tracehouse.settings import Settings


def _app_routes() -> set[tuple[str, str]]:
    """(method, path) of every route the app registers; aiohttp adds HEAD beside each GET."""
    app = create_app(Settings())
    return {(r.method, r.resource.canonical) for r in app.router.routes() if r.method != "HEAD"}


def _documented() -> set[tuple[str, str]]:
    return {(method.upper(), path) for path, methods in document()["paths"].items() for method in methods}


def test_every_route_is_documented_and_every_documented_route_exists() -> None:
    routes, documented = _app_routes(), _documented()
    assert routes - documented == set(), "routes missing from api/openapi.py"
    assert documented - routes == set(), "documented operations the app does not have"
    assert ("GET", "/v1/openapi.json") in routes


def test_document_is_valid_openapi_3_1() -> None:
    jsonschema_rs.Draft202012Validator(OPENAPI_31).validate(json.loads(json.dumps(document())))
    for name, schema in document()["components"]["schemas"].items():
        assert jsonschema_rs.meta.is_valid(schema), name


def test_every_operation_but_the_public_ones_needs_a_key_and_answers_401_without() -> None:
    public = {"/healthz", "/readyz", "/v1/openapi.json"}
    for path, methods in document()["paths"].items():
        for op in methods.values():
            if path in public:
                assert op["security"] == [] and "401" not in op["responses"], path
            else:
                assert op["security"][0].keys() == {"bearerAuth"} and "401" in op["responses"], path


def test_parameters_carry_the_routes_limits_and_enums() -> None:
    def param(path: str, name: str) -> dict:
        return next(p["schema"] for p in document()["paths"][path]["get"]["parameters"] if p["name"] == name)

    assert param("/v1/traces", "limit")["maximum"] == gateway.MAX_LIMIT
    assert param("/v1/traces", "status")["enum"] == list(gateway.STATUSES)
    assert param("/api/v1/traces", "outcome")["enum"] == list(governance.OUTCOME_FILTERS)
    documented = {p["name"] for p in document()["paths"]["/v1/traces"]["get"]["parameters"]}
    assert documented == set(gateway.GATEWAY_PARAMS + gateway.AGENTMARK_PARAMS)
    documented = {p["name"] for p in document()["paths"]["/api/v1/traces"]["get"]["parameters"]}
    assert documented == set(governance.LIST_PARAMS)


def test_event_shapes_follow_the_avro_schema() -> None:
    schemas = document()["components"]["schemas"]
    assert list(schemas["Event"]["properties"]) == [f["name"] for f in record_fields("TraceEvent")]
    inputs = schemas["TraceEventInput"]
    assert "org_id" not in inputs["properties"] and inputs["required"] == ["trace_id"]
    assert set(schemas["AuditEventInput"]["required"]) == {"actor", "action"}


async def test_the_document_is_served_without_a_key() -> None:
    response = await serve(make_mocked_request("GET", "/v1/openapi.json"))
    assert response.status == 200 and json.loads(response.body) == document()


def test_the_trace_export_documents_the_app_id_header_with_the_ids_limit() -> None:
    from api.routes.gateway_export import APP_ID_HEADER
    from schemas.model import MAX_ID_LEN

    params = document()["paths"]["/v1/traces/export"]["get"]["parameters"]
    [header] = [p for p in params if p["in"] == "header"]
    assert header["name"] == APP_ID_HEADER == "X-Agentmark-App-Id" and header["required"] is False
    assert header["schema"] == {"type": "string", "minLength": 1, "maxLength": MAX_ID_LEN}
    app_id = document()["components"]["schemas"]["TraceEventInput"]["properties"]["app_id"]
    assert app_id["type"] == ["string", "null"] and (app_id["minLength"], app_id["maxLength"]) == (1, MAX_ID_LEN)
