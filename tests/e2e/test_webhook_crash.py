"""kill -9 of tracehouse while webhook deliveries wait in every retry tier and while a receiver is in
the middle of a request: after the restart every delivery still arrives or is dead-lettered, none is
lost (counted at the receivers and in the attempts the worker recorded)."""

from __future__ import annotations

import asyncio
import collections
import contextlib
import json
import signal
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass, field

import pytest
from aiohttp import web
from aiohttp.test_utils import TestServer

from tests.conftest import start_stack
from tests.support.service import Api, eventually

pytestmark = pytest.mark.slow

EVENTS = 40
SCHEDULE = "1s,1s,1s"


@dataclass
class Receiver:
    """Answers each webhook-id with ``fail_first`` 500s, then 200 after ``delay`` seconds."""

    fail_first: int = 0
    delay: float = 0.0
    always_fail: bool = False
    tries: collections.Counter[str] = field(default_factory=collections.Counter)
    succeeded: collections.Counter[str] = field(default_factory=collections.Counter)
    started: int = 0

    async def handle(self, request: web.Request) -> web.Response:
        body = json.loads(await request.read())
        if not body["data"]["action"].startswith("act-"):  # the org's own webhook.created and api_key.created
            return web.Response(status=204)
        msg_id = request.headers["webhook-id"]
        self.tries[msg_id] += 1
        self.started += 1
        if self.always_fail or self.tries[msg_id] <= self.fail_first:
            return web.Response(status=500)
        await asyncio.sleep(self.delay)
        self.succeeded[msg_id] += 1
        return web.Response(status=204)


@contextlib.asynccontextmanager
async def serving(*receivers: Receiver) -> AsyncIterator[list[str]]:
    async with contextlib.AsyncExitStack() as stack:
        urls = []
        for receiver in receivers:
            app = web.Application()
            app.router.add_post("/hook", receiver.handle)
            server = await stack.enter_async_context(TestServer(app, host="127.0.0.1"))
            urls.append(str(server.make_url("/hook")))
        yield urls


async def test_kill_9_while_deliveries_wait_in_every_tier_and_mid_request_loses_none(tmp_path) -> None:
    # the breakers stay closed (the dead receiver would open its own for the cool-down, by design)
    broker, service = start_stack(tmp_path, TRACEHOUSE_WEBHOOK_ALLOW_PRIVATE_NETWORKS="true",
                                  TRACEHOUSE_WEBHOOK_RETRY_SCHEDULE=SCHEDULE,
                                  TRACEHOUSE_WEBHOOK_BREAKER_FAILURES="1000")
    flaky, slow, dead = Receiver(fail_first=2), Receiver(delay=2.0), Receiver(always_fail=True)
    try:
        async with serving(flaky, slow, dead) as urls:
            async with Api(service.url) as api:
                org = f"hooks-{uuid.uuid4().hex[:6]}"
                key = await api.org_key(org, ["webhooks:manage", "audit:write", "audit:read"])
                subs = []
                for url in urls:
                    status, body = await api.post("/v1/webhooks", key,
                                                  {"url": url, "event_types": ["audit.event.created"]})
                    assert status == 201, body
                    subs.append(body["id"])
                events = [{"actor": "crash-test", "action": f"act-{i}", "target": f"t-{i}"} for i in range(EVENTS)]
                status, body = await api.post("/v1/audit/events", key, events)
                assert status == 202, body
                # the flaky deliveries wait for retry 1 or 2, the dead ones move through all three tiers,
                # and the slow receiver has requests open
                await eventually(lambda: asyncio.sleep(0, (len(flaky.tries), slow.started, sum(dead.tries.values()))),
                                 lambda got: got[0] == EVENTS and got[1] > 0 and got[2] >= EVENTS, timeout=60,
                                 interval=0.05)
            open_requests = slow.started - sum(slow.succeeded.values())
            waiting = EVENTS - len(flaky.succeeded)
            service.stop(signal.SIGKILL)
            assert open_requests > 0, "no request was open at the kill; nothing was tested"
            assert waiting > 0, "no delivery waited in a retry tier at the kill; nothing was tested"
            service.start()  # same data dir and broker
            await eventually(lambda: asyncio.sleep(0, (len(flaky.succeeded), len(slow.succeeded))),
                             lambda got: got == (EVENTS, EVENTS), timeout=120)
            # the dead receiver saw every delivery's first attempt and three retries (more when the kill
            # repeated one), then nothing more: each went to the dead letters
            exhausted = await eventually(lambda: asyncio.sleep(0, {i for i, n in dead.tries.items() if n >= 4}),
                                         lambda got: len(got) == EVENTS, timeout=120)
            tries = sum(dead.tries.values())
            await asyncio.sleep(3)
            assert sum(dead.tries.values()) == tries and set(dead.tries) == exhausted
            # and ClickHouse holds the same: each flaky and slow delivery delivered, each dead one dead-lettered
            async with Api(service.url) as api:
                for sub, outcome, seen in ((subs[0], "delivered", set(flaky.succeeded)),
                                           (subs[1], "delivered", set(slow.succeeded)),
                                           (subs[2], "dead_lettered", exhausted)):
                    recorded = await eventually(lambda sub=sub, outcome=outcome: delivery_ids(api, key, sub, outcome),
                                                lambda got, seen=seen: got >= seen, timeout=60)
                    # beside them, at most the org's webhook.created audit entries and its key's api_key.created
                    # (answered 204, not counted)
                    assert len(recorded - seen) <= (len(subs) + 1 if outcome == "delivered" else 0)
    finally:
        service.stop()
        broker.stop()


async def delivery_ids(api: Api, key: str, subscription_id: str, outcome: str) -> set[str]:
    """The ids of the subscription's deliveries with an attempt of ``outcome``, as ClickHouse holds them."""
    ids: set[str] = set()
    cursor = None
    while True:
        params = {"status": outcome, "limit": "200"} | ({"cursor": cursor} if cursor else {})
        status, body = await api.get(f"/v1/webhooks/{subscription_id}/deliveries", key, **params)
        assert status == 200, body
        ids |= {a["delivery_id"] for a in body["attempts"]}
        cursor = body["nextCursor"]
        if not cursor:
            return ids
