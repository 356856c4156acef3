"""Schemathesis against a real service (broker, chdb, worker, API): every operation of
GET /v1/openapi.json, with generated valid and invalid requests, authenticated by a real org
key. Checks: no server error (5xx only where documented), every status and body as documented.

Bounded for ``make test`` (FUZZ_EXAMPLES examples per operation and phase, default 12, one
fixed seed so CI is deterministic); ``make fuzz`` runs more.
"""

from __future__ import annotations

import os
import time

import pytest
import requests
import schemathesis

from api.auth import SCOPES, Principal
from api.openapi import document
from schemas.timefmt import format_ms
from tests.support.service import ADMIN_KEY, Service

pytestmark = pytest.mark.slow

EXAMPLES = int(os.environ.get("FUZZ_EXAMPLES", "12"))
SEED = int(os.environ.get("FUZZ_SEED", "20261205"))
#: Where a generated request that the schema calls invalid may still be answered 2xx, on purpose: a
#: batch with some invalid events is accepted for the valid ones (202, the others listed in ``rejected``).
PARTIAL_ACCEPTANCE = ("/v1/events", "/v1/audit/events")
#: Where a request every parameter of which is valid alone may still be a 400, which OpenAPI cannot
#: express: an opaque cursor the API did not issue, ``since`` with ``startDate``, ``metadata_key``
#: without ``metadata_value``, ``from`` after ``to``, ``cursor`` with ``offset``/``page``, a page past
#: the offset cap. Every other check (no 5xx, documented statuses and bodies) still runs there.
#: Ingest too: JSON Schema cannot say "valid Unicode" (a lone surrogate escape is rejected naming the
#: field) nor "an integer written without a fraction" (``occurred_at: 1.7e12`` is rejected).
#: Webhook subscriptions: nor "a URL whose host resolves to a public address"; their test payloads, nor
#: "nested at most 32 levels"; replays, nor "a dead letter's id". Exports: ``from`` after ``to``;
#: the trace export: ``startDate`` after ``endDate``, ``format=openai`` with ``lightweight`` or another type.
DEPENDENT_PARAMETERS = (*PARTIAL_ACCEPTANCE, "/v1/traces", "/v1/traces/export", "/v1/metrics", "/api/v1/traces",
                        "/api/v1/traces/export", "/api/v1/audit/export",
                        "/tenants/{tenant_id}/traces", "/v1/checkpoints", "/v1/audit/verify", "/v1/audit/export",
                        "/v1/webhooks", "/v1/webhooks/{webhook_id}", "/v1/webhooks/test",
                        "/v1/webhooks/{webhook_id}/deliveries", "/v1/webhooks/{webhook_id}/replay")


def _seed_data(base: str, key: str) -> None:
    """Two traces in the caller's org (one governance, one model call), stored and chained, so
    generated requests reach the 200 answers too, not only 404s."""
    now = int(time.time() * 1000) - 60_000
    gov, llm = TRACES
    events = [
        {"trace_id": gov, "type": "trace_initiated", "class": "governance", "occurred_at": format_ms(now),
         "agent_id": "ag-1", "agent_name": "deploy-agent", "actor_type": "agent", "actor_name": "deploy-agent",
         "description": "deploy", "status": "started"},
        {"trace_id": gov, "type": "approval_requested", "occurred_at": format_ms(now + 1000),
         "approval_request_id": "ap-1", "metadata": {"flag_reason": "prod"}},
        {"trace_id": llm, "type": "GENERATION", "name": "chat", "model": "gpt-4o", "occurred_at": format_ms(now),
         "prompt_name": "support", "messages": [{"role": "user", "content": "hi"}], "output": "hello",
         "input_tokens": 3, "output_tokens": 5, "cost": 0.01, "tags": ["prod"], "status": "STATUS_CODE_OK"},
    ]
    headers = {"Authorization": f"Bearer {key}"}
    r = requests.post(f"{base}/v1/events", json=events, headers=headers, timeout=30)
    assert r.status_code == 202, r.text
    r = requests.post(f"{base}/v1/audit/events", json=[{"actor": "a", "action": "b"}], headers=headers, timeout=30)
    assert r.status_code == 202, r.text
    deadline = time.monotonic() + 30
    for trace in (gov, llm):
        while requests.get(f"{base}/tenants/{ORG}/traces/{trace}", headers=headers, timeout=30).status_code != 200:
            assert time.monotonic() < deadline, f"trace {trace} not stored in 30 s"
            time.sleep(0.2)


#: Fixed names (each e2e session has a fresh service), so generation is the same on every run.
ORG, TRACES = "openapi-contract", ["contract-gov", "contract-llm"]
CONFIG = schemathesis.Config.from_dict({
    "seed": SEED,
    "request-timeout": 30,
    "generation": {"max-examples": EXAMPLES, "deterministic": True, "database": "none"},
    # known ids in half the generated requests: the 200 answers are checked, not only the 404s
    "dictionaries": {"traces": {"values": TRACES}, "tenants": {"values": [ORG]}},
    "parameters": {"trace_id": {"dictionary": "traces", "probability": 0.5},
                   "tenant_id": {"dictionary": "tenants", "probability": 0.5}},
    "phases": {"stateful": {"enabled": False}},
    "operations": [
        *({"include-path": path, "checks": {"negative_data_rejection": {"enabled": False}}}
          for path in PARTIAL_ACCEPTANCE),
        # OTLP: an empty protobuf body is an empty export request, a success, though the body is "required"
        {"include-path": "/v1/traces", "include-method": "POST",
         "checks": {"negative_data_rejection": {"enabled": False}}},
        *({"include-path": path, "checks": {"positive_data_acceptance": {
            "expected-statuses": ["2xx", "400", "401", "403", "404"]}}} for path in DEPENDENT_PARAMETERS),
    ],
})
#: OTLP's protobuf bodies: schemathesis sends the bytes it generates for ``format: binary`` as they are
schemathesis.serializer.alias("application/x-protobuf", "application/octet-stream")
#: The document as built in this process; the fixture checks the service serves the same.
schema = schemathesis.openapi.from_dict(document(), config=CONFIG)


@pytest.fixture(scope="session")
def stack(noida_stack: Service) -> Service:
    """The contract is the API's, not the broker's: it is checked on the noida-db stack only."""
    return noida_stack


@pytest.fixture(scope="module")
def fuzz_key(stack: Service) -> str:
    """An org key with every scope (``admin``), made with the operator key, and the org's seed data."""
    served = requests.get(f"{stack.url}/v1/openapi.json", timeout=30)
    assert served.status_code == 200 and served.json() == document()
    r = requests.post(f"{stack.url}/v1/admin/keys", headers={"Authorization": f"Bearer {ADMIN_KEY}"},
                      json={"org_id": ORG, "scopes": ["admin"], "name": "contract"}, timeout=30)
    assert r.status_code == 201, r.text
    key = r.json()["key"]
    _seed_data(stack.url, key)
    return key


@schema.parametrize()
def test_api_honours_its_contract(case: schemathesis.Case, stack: Service, fuzz_key: str) -> None:
    case.call_and_validate(base_url=stack.url, headers={"Authorization": f"Bearer {fuzz_key}"})


def _minimal_request(path: str, method: str) -> dict:
    """A request to the operation that is valid apart from the key (unknown ids are fine)."""
    url = (path.replace("{tenant_id}", ORG).replace("{trace_id}", "no-such-trace").replace("{key_id}", "no-such-key")
           .replace("{webhook_id}", "wh_nosuchwebhook"))
    body = {"/v1/events": [{"trace_id": "scope-check"}], "/v1/audit/events": [{"actor": "a", "action": "b"}],
            "/api/v1/traces/{trace_id}/outcome": {"status": "success"}, "/v1/audit/export": {},
            "/v1/admin/keys": {"org_id": ORG, "scopes": ["traces:read"], "name": "scope-check"},
            "/v1/webhooks": {"url": "https://93.184.215.14/scope-check", "event_types": ["webhook.test"]}}.get(path)
    return {"method": method.upper(), "url": url, "json": body if method == "post" else None}


def test_each_operation_needs_the_scope_it_documents(stack: Service, fuzz_key: str) -> None:
    """A key holding every scope but the documented one (and those implying it) gets 403; a key holding
    only it does not."""
    def key(scopes: list[str]) -> str:
        r = requests.post(f"{stack.url}/v1/admin/keys", headers={"Authorization": f"Bearer {fuzz_key}"},
                          json={"org_id": ORG, "scopes": scopes, "name": "scope-check"}, timeout=30)
        assert r.status_code == 201, r.text
        return r.json()["key"]

    checked = 0
    for path, methods in document()["paths"].items():
        for method, op in methods.items():
            needs = [s for req in op["security"] for s in req.get("bearerAuth", [])]
            if not needs:
                continue
            (scope,) = needs
            request = _minimal_request(path, method)
            others = [s for s in SCOPES if not Principal(ORG, frozenset({s}), "k").allows(scope)]
            checks = ((others, True), ([scope], False))
            if scope == "operator":  # no org key, whatever its scopes
                checks = ((list(SCOPES), True),)
            for scopes, forbidden in checks:
                r = requests.request(request["method"], stack.url + request["url"], json=request["json"],
                                     headers={"Authorization": f"Bearer {key(scopes)}"}, timeout=30)
                assert (r.status_code == 403) == forbidden, (method, path, scopes, r.status_code, r.text)
            checked += 1
    assert checked == 31
