"""GET /v1/admin/stored-links: what a chain worker without ClickHouse reads from the owner's API
(``streams.stored_links.HttpStoredLinks``) is what ``ChainRepository.stored_after`` returns."""

from __future__ import annotations

import pytest

from schemas.topics import SEALED_EVENTS
from sinks.repositories.chains import ChainRepository
from streams.stored_links import HttpStoredLinks
from tests.support.service import ADMIN_KEY, uid

pytestmark = pytest.mark.asyncio(loop_scope="session")


async def test_the_owner_serves_the_stored_links_a_chain_worker_restores_from(api, pipeline, in_process) -> None:
    key = await api.org_key(uid("links"))
    first = pipeline.offset
    status, _ = await api.post("/v1/events", key, [{"trace_id": uid("tr"), "event_id": uid("e")} for _ in range(3)])
    assert status == 202
    await pipeline.flush()
    stored = await ChainRepository(pipeline.clickhouse).stored_after(SEALED_EVENTS, 0, first)
    assert sum(map(len, stored.values())) >= 3
    over_http = await HttpStoredLinks(api.base_url, lambda: ADMIN_KEY).stored_after(SEALED_EVENTS, 0, first)
    assert over_http == stored


@pytest.mark.parametrize("params, field", [({"offset": "0"}, "partition"), ({"partition": "0"}, "offset"),
                                           ({"partition": str(2**31), "offset": "0"}, "partition"),
                                           ({"partition": "0", "offset": "-1"}, "offset"),
                                           ({"partition": "0", "offset": "0", "org": "x"}, "org")])
async def test_bad_parameters_are_400_naming_them(api, params, field) -> None:
    status, body = await api.get("/v1/admin/stored-links", ADMIN_KEY, **params)
    assert status == 400 and body["error"]["details"]["field"] == field


async def test_only_the_operator_key_reads_stored_links(api) -> None:
    admin = await api.org_key(uid("org"), ["admin"])
    assert (await api.get("/v1/admin/stored-links", admin, partition="0", offset="0"))[0] == 403
    assert (await api.get("/v1/admin/stored-links", admin))[0] == 403  # before its parameters are looked at
    assert (await api.get("/v1/admin/stored-links", partition="0", offset="0"))[0] == 401


async def test_a_partition_that_does_not_exist_has_no_links(api) -> None:
    status, body = await api.get("/v1/admin/stored-links", ADMIN_KEY, partition="1000", offset="0")
    assert status == 200 and all(rows == [] for rows in body["links"].values())
