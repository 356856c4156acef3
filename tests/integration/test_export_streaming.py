"""Streamed export responses over a real aiohttp server: a client that leaves stops the reading of
further chunks, and a failure after the first byte ends the response at once (no hung client)."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import aiohttp
import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient, TestServer

from api.exports.streaming import ReadAhead, stream

pytestmark = pytest.mark.asyncio


async def test_a_client_that_leaves_stops_the_export():
    produced, closed = [], asyncio.Event()

    async def pieces() -> AsyncIterator[bytes]:
        try:
            for i in range(1_000):
                produced.append(i)
                yield b"x" * 65_536  # a chunk read from ClickHouse
                await asyncio.sleep(0.01)
        finally:
            closed.set()

    async def handler(request: web.Request) -> web.StreamResponse:
        return await stream(request, pieces(), "text/csv")

    app = web.Application()
    app.router.add_get("/export", handler)
    async with TestClient(TestServer(app)) as client:
        response = await client.get("/export")
        await response.content.readexactly(65_536)
        response.close()  # the client goes away after the first chunk
        await asyncio.wait_for(closed.wait(), 10)
    assert len(produced) < 100  # far from the 1,000 chunks the export would have read


async def test_a_failure_after_the_first_byte_ends_the_response_at_once():
    async def pieces() -> AsyncIterator[bytes]:
        yield b"trace_id\r\n"
        raise RuntimeError("ClickHouse went away")

    async def handler(request: web.Request) -> web.StreamResponse:
        return await stream(request, pieces(), "text/csv")

    app = web.Application()
    app.router.add_get("/export", handler)
    async with TestClient(TestServer(app)) as client:
        response = await client.get("/export")
        assert response.status == 200
        with pytest.raises(aiohttp.ClientPayloadError):
            await asyncio.wait_for(response.read(), 10)  # truncated, not a wait for the client's timeout


async def test_read_ahead_reads_the_first_piece_at_once_and_close_cancels_it():
    started, cancelled, release = asyncio.Event(), asyncio.Event(), asyncio.Event()

    async def pieces() -> AsyncIterator[bytes]:
        started.set()
        try:
            await release.wait()  # a slow first query
        except asyncio.CancelledError:
            cancelled.set()
            raise
        yield b"first"
        yield b"second"

    ahead = ReadAhead(pieces())
    await asyncio.wait_for(started.wait(), 5)  # reading before anyone iterates
    release.set()
    assert [piece async for piece in ahead] == [b"first", b"second"]

    release.clear()
    started.clear()
    ahead = ReadAhead(pieces())
    await asyncio.wait_for(started.wait(), 5)
    await ahead.aclose()  # the handler gave up (a 413, an error): the first read is cancelled
    assert cancelled.is_set()


async def test_read_ahead_of_nothing_is_empty():
    async def pieces() -> AsyncIterator[bytes]:
        return
        yield b""  # an async generator that yields nothing

    assert [piece async for piece in ReadAhead(pieces()) if piece] == []
