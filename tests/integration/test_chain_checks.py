"""A long chain's links hashed across the API's worker processes (``api.chain_checks``) give the
rows one thread gives, in order, and a changed event is still named."""

from __future__ import annotations

from operator import itemgetter

from api import chain_checks
from api.chain_checks import _split, checked_trace_links
from api.preparation import PreparationPool
from schemas.integrity import verify
from sinks.repositories.chains import TRACE_LINKS, ChainRepository
from streams.chaining import TRACE_CHAIN
from tests.integration.test_chain_storage import IN_THIS_PROCESS, mutate, store_chain, trace_batches


def test_split_keeps_blocks_in_order_in_about_equal_groups():
    blocks = [(bytes([i]), n) for i, n in enumerate([3, 1, 4, 1, 5, 9, 2, 6])]
    for parts in (1, 2, 3):
        groups = _split(blocks, parts)
        assert b"".join(data for data, _ in groups) == bytes(range(8))
        assert sum(n for _, n in groups) == 31 and len(groups) <= parts
        assert all(n <= 31 / parts + 9 for _, n in groups)  # a group passes its share by a block at most
    assert len(_split(blocks, 3)) == 3


async def test_links_hashed_in_worker_processes_match_one_thread(clickhouse, monkeypatch):
    await store_chain(clickhouse, TRACE_CHAIN, trace_batches(n=40, per=4))
    repository = ChainRepository(clickhouse)
    monkeypatch.setattr(chain_checks, "SPLIT_LINKS", 5)
    pool = PreparationPool(2)
    await pool.start()
    try:
        split = await checked_trace_links(repository, pool, "o", "t")
        assert split == await checked_trace_links(repository, IN_THIS_PROCESS, "o", "t") and len(split) == 40
        assert verify(split, TRACE_LINKS.id_column, recompute=itemgetter("recomputed")).valid
        await mutate(clickhouse, "ALTER TABLE {t} UPDATE cost = 1.5 WHERE event_id = 'e27'")
        verdict = verify(await checked_trace_links(repository, pool, "o", "t"), TRACE_LINKS.id_column,
                         recompute=itemgetter("recomputed"))
        assert (verdict.valid, verdict.first_invalid_event) == (False, "e27")
        assert await checked_trace_links(repository, pool, "o", "none") == []
    finally:
        await pool.stop()
