"""A response written piece by piece as the export reads its rows from ClickHouse in chunks, so the
API's memory holds one chunk whatever the export's size (chdb's own streaming buffers the whole
result before the first byte: 3.9 GB for 1M rows, measured 2026-11).

A client that goes away ends the export: the write fails, the generator of pieces is closed (no
further chunk is read) and the handler returns. A failure after the first byte (ClickHouse gone)
cannot become an error status any more: the connection is closed without the final chunk, so the
client sees a truncated response at once instead of waiting for more.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator, Mapping

from aiohttp import web

log = logging.getLogger(__name__)


async def stream(request: web.Request, pieces: AsyncIterator[bytes], content_type: str,
                 headers: Mapping[str, str] | None = None) -> web.StreamResponse:
    """Send 200 with ``headers``, then every piece of ``pieces`` as it comes."""
    response = web.StreamResponse(headers={"Content-Type": content_type, **(headers or {})})
    await response.prepare(request)
    try:
        async for piece in pieces:
            if piece:
                await response.write(piece)
    except ConnectionError:  # the client went away: read nothing more
        log.info("%s %s: the client left during the export", request.method, request.path)
        return response
    except Exception:
        log.exception("%s %s: the export failed after it started; closing the connection",
                      request.method, request.path)
        if request.transport is not None:
            request.transport.close()
        return response
    finally:
        with contextlib.suppress(Exception):
            await pieces.aclose()  # type: ignore[attr-defined]
    await response.write_eof()
    return response


class ReadAhead:
    """``pieces`` with the first one read at once, while the handler goes on (counting the rows for a
    header, say): the first byte then waits for the slower of the two, not for both in turn."""

    def __init__(self, pieces: AsyncIterator[bytes]) -> None:
        self._pieces = pieces
        self._first: asyncio.Future[bytes] | None = asyncio.ensure_future(anext(pieces, b""))

    def __aiter__(self) -> ReadAhead:
        return self

    async def __anext__(self) -> bytes:
        if self._first is not None:
            first, self._first = self._first, None
            return await first
        return await anext(self._pieces)

    async def aclose(self) -> None:
        """Stop reading: the first piece's read is cancelled if it is still under way."""
        if self._first is not None:
            self._first.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await self._first
            self._first = None
        await self._pieces.aclose()  # type: ignore[attr-defined]
