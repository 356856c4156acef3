"""Webhook dispatch through the whole service and real receivers on loopback: seed 000's
``POST /v1/webhooks/test`` arrives signed; a receiver that always fails ends in the dead letters
``GET /v1/webhooks`` shows; once it recovers, ``POST …/replay`` delivers each dead letter once with its
original webhook-id, and ``GET …/deliveries`` shows every attempt."""

from __future__ import annotations

import asyncio
import contextlib
import json
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from aiohttp import web
from aiohttp.test_utils import TestServer
from standardwebhooks.webhooks import Webhook

from tests.conftest import start_stack
from tests.support.service import Api, eventually, uid

pytestmark = pytest.mark.slow

TIERS = 3  # TRACEHOUSE_WEBHOOK_RETRY_SCHEDULE below: 3 retries, then the dead letter


@dataclass
class Receiver:
    """A loopback endpoint answering ``status``; every call's headers and body are kept."""

    status: int = 200
    calls: list[tuple[int, dict[str, str], bytes]] = field(default_factory=list)

    async def handle(self, request: web.Request) -> web.Response:
        self.calls.append((self.status, {k.lower(): v for k, v in request.headers.items()}, await request.read()))
        return web.Response(status=self.status)


@contextlib.asynccontextmanager
async def receiving(**receivers: Receiver) -> AsyncIterator[dict[str, str]]:
    app = web.Application()
    for name, receiver in receivers.items():
        app.router.add_post(f"/{name}", receiver.handle)
    async with TestServer(app, host="127.0.0.1") as server:
        yield {name: str(server.make_url(f"/{name}")) for name in receivers}


async def test_test_delivery_dead_letters_and_replay(tmp_path: Path):
    broker, service = start_stack(tmp_path, TRACEHOUSE_WEBHOOK_ALLOW_PRIVATE_NETWORKS="true",
                                  TRACEHOUSE_WEBHOOK_RETRY_SCHEDULE="200ms,400ms,600ms",
                                  # 8 failures in a row below: the breaker would hold them back 30 s each
                                  TRACEHOUSE_WEBHOOK_BREAKER_FAILURES="20")
    ok, flaky = Receiver(), Receiver(status=500)
    try:
        async with receiving(ok=ok, flaky=flaky) as urls, Api(service.url) as api:
            key = await api.org_key(uid("wh-dispatch"), ["webhooks:manage"])

            # seed 000's curl body arrives, signed with the secret of the subscription it created
            status, test = await api.post("/v1/webhooks/test", key, {"url": urls["ok"], "payload": {"ping": True}})
            assert status == 202 and "secret" in test, test
            await eventually(_now(lambda: len(ok.calls)), lambda n: n >= 1)
            (_, headers, body), = ok.calls
            Webhook(test["secret"]).verify(body, headers)  # an independent Standard Webhooks implementation
            assert headers["webhook-id"] == test["delivery_id"]
            sent = json.loads(body)
            assert sent["type"] == "webhook.test" and sent["data"] == {"ping": True}

            # an endpoint failing every time: 1 + 3 attempts each, then the dead letters GET /v1/webhooks shows
            status, first = await api.post("/v1/webhooks/test", key, {"url": urls["flaky"], "payload": {"n": 1}})
            assert status == 202, first
            secret, sub_id = first["secret"], first["subscription_id"]
            status, second = await api.post("/v1/webhooks/test", key, {"url": urls["flaky"], "payload": {"n": 2}})
            assert status == 202 and second["subscription_id"] == sub_id and "secret" not in second
            dead = {first["delivery_id"], second["delivery_id"]}

            async def flaky_health() -> dict[str, Any]:
                _, listed = await api.get("/v1/webhooks", key)
                return next(w for w in listed["webhooks"] if w["id"] == sub_id)
            shown = await eventually(flaky_health, lambda w: w["dead_letters"]["count"] == 2, timeout=60)
            assert {d["delivery_id"] for d in shown["dead_letters"]["recent"]} == dead
            assert all(d["attempts"] == 1 + TIERS and d["last_error"] == "HTTP 500" and d["type"] == "webhook.test"
                       for d in shown["dead_letters"]["recent"])
            assert shown["consecutive_failures"] == 2 * (1 + TIERS) and shown["last_success_at"] is None
            assert len(flaky.calls) == 2 * (1 + TIERS)

            # recovered: a replay delivers each dead letter once, with its original id and body
            failed_bodies = {h["webhook-id"]: b for _, h, b in flaky.calls}
            flaky.status = 200
            status, replayed = await api.post(f"/v1/webhooks/{sub_id}/replay", key)
            assert status == 202 and replayed["replayed"] == 2 and set(replayed["delivery_ids"]) == dead, replayed
            await eventually(_now(lambda: [c for c in flaky.calls if c[0] == 200]), lambda c: len(c) >= 2)
            await asyncio.sleep(1.0)  # nothing more arrives
            delivered = [(h, b) for s, h, b in flaky.calls if s == 200]
            assert sorted(h["webhook-id"] for h, _ in delivered) == sorted(dead)
            for h, b in delivered:
                Webhook(secret).verify(b, h)
                assert b == failed_bodies[h["webhook-id"]]

            settled = await eventually(flaky_health, lambda w: w["dead_letters"]["count"] == 0, timeout=60)
            assert settled["consecutive_failures"] == 0 and settled["last_success_at"] is not None
            assert settled["breaker"] == "closed"

            async def attempts() -> list[dict[str, Any]]:
                _, page = await api.get(f"/v1/webhooks/{sub_id}/deliveries", key, limit=200)
                return page["attempts"]
            shown = await eventually(attempts, lambda a: len(a) == 2 * (TIERS + 2), timeout=60)
            for delivery_id in dead:
                mine = [(a["attempt"], a["outcome"], a["status_code"]) for a in reversed(shown)
                        if a["delivery_id"] == delivery_id]
                assert mine == [(1, "retrying", 500), (2, "retrying", 500), (3, "retrying", 500),
                                (4, "dead_lettered", 500), (1, "delivered", 200)]
            _, only = await api.get(f"/v1/webhooks/{sub_id}/deliveries", key, status="delivered")
            assert {a["delivery_id"] for a in only["attempts"]} == dead and len(only["attempts"]) == 2
    finally:
        service.stop()
        broker.stop()


def _now(value: Any) -> Any:
    """An awaitable probe of a plain function, for ``eventually``."""
    async def probe() -> Any:
        return value()
    return probe
