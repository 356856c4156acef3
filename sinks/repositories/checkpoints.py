"""Signed checkpoints and their leaves in ClickHouse (the types are ``schemas.checkpoints``)."""

from __future__ import annotations

import json
from dataclasses import dataclass

from schemas.checkpoints import Checkpoint, Leaf, SignedCheckpoint
from schemas.timefmt import datetime_ms, format_ms
from sinks.clickhouse import ClickHouse

HASH_HEX = 64


@dataclass(frozen=True)
class Coverage:
    """The latest checkpoint covering a chain, and the chain's head in it."""

    signed: SignedCheckpoint
    leaf: Leaf
    leaf_index: int


_CHECKPOINT_COLUMNS = "number, period_start, period_end, tree_size, root, previous, signature, public_key"


def _signed(row: tuple) -> SignedCheckpoint:
    number, start, end, size, root, previous, signature, public_key = row
    checkpoint = Checkpoint(int(number), datetime_ms(start), datetime_ms(end), int(size), root, previous)
    return SignedCheckpoint(checkpoint, signature, public_key)


class CheckpointRepository:
    def __init__(self, ch: ClickHouse) -> None:
        self.ch = ch

    async def save(self, signed: SignedCheckpoint, leaves: list[Leaf], leaf_hashes: list[bytes]) -> None:
        """Store a checkpoint: leaves first, so a stored checkpoint always has its leaves."""
        c = signed.checkpoint
        rows = (json.dumps({"org_id": leaf.org_id, "kind": leaf.kind, "chain_id": leaf.chain_id, "checkpoint": c.number,
                            "leaf_index": i, "seq": leaf.seq, "hash": leaf.hash}) for i, leaf in enumerate(leaves))
        await self.ch.insert_formatted("checkpoint_leaves", "\n".join(rows).encode(), "JSONEachRow")
        row = {"number": c.number, "period_start": format_ms(c.period_start), "period_end": format_ms(c.period_end),
               "tree_size": c.tree_size, "root": c.root, "previous": c.previous, "signature": signed.signature,
               "public_key": signed.public_key, "leaf_hashes": b"".join(leaf_hashes).hex()}
        await self.ch.insert_formatted("checkpoints", json.dumps(row).encode(), "JSONEachRow",
                                       {"date_time_input_format": "best_effort"})

    async def latest(self) -> SignedCheckpoint | None:
        rows = await self.ch.query(f"SELECT {_CHECKPOINT_COLUMNS} FROM {self.ch.database}.checkpoints FINAL "
                                   "ORDER BY number DESC LIMIT 1")
        return _signed(rows.rows[0]) if rows.rows else None

    async def page(self, limit: int, before: int | None) -> list[SignedCheckpoint]:
        """Newest first, numbers below ``before`` when given."""
        where = "WHERE number < {before:UInt64}" if before is not None else ""
        rows = await self.ch.query(f"SELECT {_CHECKPOINT_COLUMNS} FROM {self.ch.database}.checkpoints FINAL {where} "
                                   "ORDER BY number DESC LIMIT {limit:UInt32}", {"before": before, "limit": limit})
        return [_signed(r) for r in rows.rows]

    async def covering(self, kind: str, org_id: str, chain_id: str) -> Coverage | None:
        """The newest checkpoint with a leaf for this chain; None if no checkpoint covers it yet."""
        db = self.ch.database
        rows = await self.ch.query(
            f"SELECT checkpoint, leaf_index, seq, hash FROM {db}.checkpoint_leaves WHERE org_id = {{org:String}} "
            "AND kind = {kind:String} AND chain_id = {chain:String} ORDER BY checkpoint DESC LIMIT 1",
            {"org": org_id, "kind": kind, "chain": chain_id})
        if not rows.rows:
            return None
        number, index, seq, digest = rows.rows[0]
        found = await self.ch.query(f"SELECT {_CHECKPOINT_COLUMNS} FROM {db}.checkpoints FINAL "
                                    "WHERE number = {n:UInt64}", {"n": int(number)})
        if not found.rows:
            return None
        return Coverage(_signed(found.rows[0]), Leaf(kind, org_id, chain_id, int(seq), digest), int(index))

    async def leaf_hashes(self, number: int) -> list[bytes]:
        """The leaf hashes of checkpoint ``number``, in tree order."""
        rows = await self.ch.query(f"SELECT leaf_hashes FROM {self.ch.database}.checkpoints FINAL "
                                   "WHERE number = {n:UInt64}", {"n": number})
        blob = bytes.fromhex(rows.rows[0][0]) if rows.rows else b""
        return [blob[i:i + 32] for i in range(0, len(blob), 32)]
