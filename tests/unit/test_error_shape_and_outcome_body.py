"""Two answers the schemathesis contract run pinned: a 405 lists the allowed methods, and
outcome metadata that is not an object (nor null) is a 400."""

from __future__ import annotations

import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient, TestServer

from api.errors import ApiError, error_middleware
from api.routes.governance import outcome_body


async def _thing(request: web.Request) -> web.Response:
    return web.json_response({})


async def test_a_405_keeps_the_allow_header_in_the_json_error_shape() -> None:
    app = web.Application(middlewares=[error_middleware(1024)])
    app.router.add_get("/thing", _thing)
    async with TestClient(TestServer(app)) as client:
        r = await client.request("DELETE", "/thing")
        assert r.status == 405
        assert set(r.headers["Allow"].split(",")) >= {"GET"}
        assert (await r.json())["error"]["code"] == "method_not_allowed"


@pytest.mark.parametrize("metadata", ["false", "0", '""', "[]", '"text"'])
def test_outcome_metadata_that_is_not_an_object_is_a_400(metadata: str) -> None:
    with pytest.raises(ApiError) as caught:
        outcome_body(f'{{"status": "success", "metadata": {metadata}}}'.encode())
    assert caught.value.status == 400 and caught.value.details["field"] == "metadata"


@pytest.mark.parametrize("body", [b'{"status": "error", "metadata": null}', b'{"status": "error"}'])
def test_outcome_metadata_null_or_absent_is_empty(body: bytes) -> None:
    assert outcome_body(body) == ("error", {})
