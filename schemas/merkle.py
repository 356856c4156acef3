"""RFC 6962 / RFC 9162 Merkle trees over byte-string leaves: roots, audit paths and their verification.

Leaves hash as ``sha256(0x00 || leaf)`` and interior nodes as ``sha256(0x01 || left || right)``. Trees are built
bottom-up, one level at a time; an odd last node is promoted unchanged to the next level, which yields exactly the
RFC 6962 tree (split at the largest power of two smaller than n) without recursion.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence

_sha256 = hashlib.sha256


def leaf_hash(leaf: bytes) -> bytes:
    """The hash of a leaf: sha256(0x00 || leaf)."""
    return _sha256(b"\x00" + leaf).digest()


def node_hash(left: bytes, right: bytes) -> bytes:
    """The hash of an interior node: sha256(0x01 || left || right)."""
    return _sha256(b"\x01" + left + right).digest()


def _next_level(level: list[bytes]) -> list[bytes]:
    """The level above ``level``: pairs hashed together, an odd last node promoted unchanged."""
    up = [_sha256(b"\x01" + left + right).digest() for left, right in zip(level[::2], level[1::2], strict=False)]
    if len(level) % 2:
        up.append(level[-1])
    return up


def merkle_root(leaves: Sequence[bytes]) -> bytes:
    """The Merkle tree hash (MTH) of ``leaves``; sha256(b"") for no leaves."""
    return root_of_hashes([leaf_hash(leaf) for leaf in leaves])


def root_of_hashes(level: list[bytes]) -> bytes:
    """The root of a tree whose leaf hashes (``leaf_hash``) are ``level``."""
    if not level:
        return _sha256(b"").digest()
    while len(level) > 1:
        level = _next_level(level)
    return level[0]


def inclusion_proof(leaves: Sequence[bytes], index: int) -> list[bytes]:
    """The RFC 6962 audit path of leaf ``index``: sibling hashes, bottom-up. ValueError if out of range."""
    return audit_path([leaf_hash(leaf) for leaf in leaves], index)


def audit_path(level: list[bytes], index: int) -> list[bytes]:
    """``inclusion_proof`` from the leaf hashes: what a stored checkpoint keeps."""
    if not 0 <= index < len(level):
        raise ValueError(f"leaf index {index} out of range for a tree of {len(level)} leaves")
    proof: list[bytes] = []
    while len(level) > 1:
        sibling = index ^ 1
        if sibling < len(level):  # else: the last odd node is promoted, no sibling at this level
            proof.append(level[sibling])
        level = _next_level(level)
        index //= 2
    return proof


def verify_inclusion(leaf: bytes, index: int, tree_size: int, proof: Sequence[bytes], root: bytes) -> bool:
    """Whether ``proof`` puts ``leaf`` at ``index`` of a ``tree_size``-leaf tree with ``root`` (RFC 9162 2.1.3.2)."""
    if not 0 <= index < tree_size:
        return False
    fn, sn = index, tree_size - 1
    r = leaf_hash(leaf)
    for p in proof:
        if sn == 0:
            return False
        if fn & 1 or fn == sn:
            r = node_hash(p, r)
            while fn and not fn & 1:  # a promoted node: climb to where it is a right child
                fn >>= 1
                sn >>= 1
        else:
            r = node_hash(r, p)
        fn >>= 1
        sn >>= 1
    return sn == 0 and r == root
