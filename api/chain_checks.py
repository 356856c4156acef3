"""A trace's stored links with the hash each one's content makes, for ``GET …/verify``: read as
ClickHouse's Avro and hashed from those bytes (``schemas.integrity.checked_links``), a long chain
split across the API's worker processes so that its hashing uses every core (a 100,000-event trace
is ~1-2 s of hashing on one core, measured 2026-12-05)."""

from __future__ import annotations

import asyncio
from itertools import chain
from typing import Any

from api.preparation import PreparationPool
from schemas.integrity import avro_link_blocks, checked_links, link_rows
from sinks.repositories.chains import TRACE_LINKS, ChainRepository

#: Below this many links a chain is hashed in one thread of this process (a worker's round trip
#: costs more than it saves).
SPLIT_LINKS = 5_000


def _split(blocks: list[tuple[bytes, int]], parts: int) -> list[tuple[bytes, int]]:
    """Consecutive blocks joined into ``parts`` groups of about as many links each."""
    total = sum(n for _, n in blocks)
    groups: list[tuple[bytes, int]] = []
    start, taken = 0, 0
    for i, (_, n) in enumerate(blocks, 1):
        taken += n
        if taken >= total * (len(groups) + 1) / parts or i == len(blocks):
            group = blocks[start:i]
            groups.append((b"".join(data for data, _ in group), sum(count for _, count in group)))
            start = i
    return groups


async def checked_trace_links(chains: ChainRepository, pool: PreparationPool, org_id: str,
                              trace_id: str) -> list[dict[str, Any]] | None:
    """The trace's links as verify's rows (``recompute`` with ``itemgetter("recomputed")``), in seq
    order; empty for an unknown trace; None when some link must be read as a dict to be hashed."""
    container = await chains.trace_links_avro(org_id, trace_id)
    blocks = await asyncio.to_thread(avro_link_blocks, container, TRACE_LINKS.schema)
    if blocks is None:
        return None
    total = sum(n for _, n in blocks)
    parts = min(pool.processes, total // SPLIT_LINKS)
    args = (TRACE_LINKS.schema, TRACE_LINKS.id_column)
    if parts < 2:
        found = [await asyncio.to_thread(checked_links, b"".join(d for d, _ in blocks), total, *args)]
    else:
        found = await asyncio.gather(*(pool.call(checked_links, data, n, *args) for data, n in _split(blocks, parts)))
    if any(links is None for links in found):
        return None
    return await asyncio.to_thread(link_rows, list(chain.from_iterable(found)), TRACE_LINKS.id_column)
