"""The checkpointer's pure part: chain-heads entries to sorted leaves and a root."""

from __future__ import annotations

from schemas.checkpoints import head_leaf
from schemas.merkle import merkle_root
from streams.chaining import Head
from streams.checkpointer import build_tree, leaf_of


def test_heads_become_sorted_leaves_and_bookkeeping_keys_are_left_out():
    heads = {
        b"trace\x00org-b\x00t\x00with-nul": Head(3, bytes([3]) * 32).pack(),
        b"audit\x00org-a": Head(9, bytes([9]) * 32).pack(),
        b"trace\x00org-a\x00t1": Head(1, bytes([1]) * 32).pack() + b"recent-ids",
        b"\x00sealed-offset\x002": (41).to_bytes(8, "big"),
    }
    assert leaf_of(b"\x00sealed-offset\x002", (41).to_bytes(8, "big")) is None
    leaves, hashes, root = build_tree(heads)
    assert [(leaf.kind, leaf.org_id, leaf.chain_id, leaf.seq) for leaf in leaves] == [
        ("audit", "org-a", "org-a", 9), ("trace", "org-a", "t1", 1), ("trace", "org-b", "t\x00with-nul", 3)]
    raw = [head_leaf(leaf.kind, leaf.org_id, leaf.chain_id, leaf.seq, leaf.hash) for leaf in leaves]
    assert raw == sorted(raw) and len(hashes) == 3
    assert root == merkle_root(raw) and leaves[1].hash == (bytes([1]) * 32).hex()


def test_a_head_kept_without_its_ids_gives_the_same_leaf():
    key = b"trace\x00org-a\x00t1"
    value = Head(7, bytes([7]) * 32, bytearray(b"d" * 64), started_at=1_795_428_000_000).pack()
    assert leaf_of(key, Head.unpack(value).link_only().pack()) == leaf_of(key, value)
    assert leaf_of(key, value).seq == 7
