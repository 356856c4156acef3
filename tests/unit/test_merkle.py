"""RFC 6962 Merkle trees: roots of hand-computed small trees, audit paths and their verification."""

import hashlib

import pytest

from schemas.merkle import inclusion_proof, leaf_hash, merkle_root, node_hash, verify_inclusion


def H(data: bytes) -> bytes:
    return hashlib.sha256(data).digest()


def L(i: int) -> bytes:
    return H(b"\x00" + LEAVES[i])


def N(left: bytes, right: bytes) -> bytes:
    return H(b"\x01" + left + right)


LEAVES = [f"leaf-{i}".encode() for i in range(40)]


def test_leaf_and_node_hashes_use_domain_separation_prefixes():
    assert leaf_hash(b"abc") == H(b"\x00abc")
    assert node_hash(b"L" * 32, b"R" * 32) == H(b"\x01" + b"L" * 32 + b"R" * 32)
    assert leaf_hash(b"abc") != H(b"abc")


def test_empty_tree_root_is_sha256_of_nothing():
    assert merkle_root([]) == H(b"")
    assert merkle_root([]).hex() == "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"


@pytest.mark.parametrize(
    ("size", "expected"),
    [
        (1, lambda: L(0)),
        (2, lambda: N(L(0), L(1))),
        (3, lambda: N(N(L(0), L(1)), L(2))),
        (5, lambda: N(N(N(L(0), L(1)), N(L(2), L(3))), L(4))),
        (7, lambda: N(N(N(L(0), L(1)), N(L(2), L(3))), N(N(L(4), L(5)), L(6)))),
        (8, lambda: N(N(N(L(0), L(1)), N(L(2), L(3))), N(N(L(4), L(5)), N(L(6), L(7))))),
    ],
)
def test_root_of_small_trees_matches_hand_computed(size, expected):
    assert merkle_root(LEAVES[:size]) == expected()


def test_root_splits_at_largest_power_of_two_below_n():
    # 6 leaves: left subtree of 4, right subtree of 2 (not 3 + 3).
    assert merkle_root(LEAVES[:6]) == N(merkle_root(LEAVES[:4]), merkle_root(LEAVES[4:6]))
    assert merkle_root(LEAVES[:33]) == N(merkle_root(LEAVES[:32]), L(32))


def test_root_depends_on_order_and_content():
    assert merkle_root(LEAVES[:4]) != merkle_root([LEAVES[1], LEAVES[0], *LEAVES[2:4]])
    assert merkle_root(LEAVES[:4]) != merkle_root([*LEAVES[:3], b"other"])


def test_known_proof_for_a_small_tree():
    # Tree of 7, leaf 4: sibling L5, then L6 (promoted), then the left subtree of 4.
    assert inclusion_proof(LEAVES[:7], 4) == [L(5), L(6), merkle_root(LEAVES[:4])]
    assert inclusion_proof(LEAVES[:7], 6) == [N(L(4), L(5)), merkle_root(LEAVES[:4])]
    assert inclusion_proof(LEAVES[:1], 0) == []


@pytest.mark.parametrize("size", range(1, 34))
def test_every_proof_verifies_and_tampering_fails(size):
    leaves = LEAVES[:size]
    root = merkle_root(leaves)
    for index in range(size):
        proof = inclusion_proof(leaves, index)
        assert verify_inclusion(leaves[index], index, size, proof, root), (size, index)
        assert not verify_inclusion(leaves[index] + b"!", index, size, proof, root)
        assert not verify_inclusion(leaves[index], index, size, proof, H(b"wrong root"))
        # A size past the next power of two always needs a longer path.
        assert not verify_inclusion(leaves[index], index, 2 ** (size - 1).bit_length() + 1, proof, root)
        if size > 1:
            for other in range(size):
                if other != index:
                    assert not verify_inclusion(leaves[index], other, size, proof, root), (size, index, other)
            for k in range(len(proof)):
                tampered = list(proof)
                tampered[k] = H(tampered[k])
                assert not verify_inclusion(leaves[index], index, size, tampered, root)
            assert not verify_inclusion(leaves[index], index, size, proof[:-1], root)
            assert not verify_inclusion(leaves[index], index, size, [*proof, proof[-1]], root)


@pytest.mark.parametrize("size", range(1, 34))
def test_wrong_tree_size_fails_unless_the_path_has_the_same_shape(size):
    # The proof does not authenticate tree_size (the signed checkpoint does): a wrong size verifies exactly when its
    # audit path for the leaf has the same length and left/right turns as the true one, and fails otherwise.
    leaves = LEAVES[:size]
    root = merkle_root(leaves)
    rejected = 0
    for index in range(size):
        proof = inclusion_proof(leaves, index)
        assert len(proof) == len(_turns(index, size))
        for wrong in range(index + 1, 70):
            if wrong == size:
                continue
            same_shape = _turns(index, wrong) == _turns(index, size)
            assert verify_inclusion(leaves[index], index, wrong, proof, root) == same_shape, (size, index, wrong)
            rejected += not same_shape
    assert rejected > size


def _turns(index: int, size: int) -> list[bool]:
    """Per audit-path element: whether the sibling is on the left (by bottom-up level walking)."""
    turns = []
    while size > 1:
        if index ^ 1 < size:
            turns.append(bool(index & 1))
        index, size = index // 2, (size + 1) // 2
    return turns


def test_verify_rejects_index_outside_tree():
    proof = inclusion_proof(LEAVES[:4], 3)
    root = merkle_root(LEAVES[:4])
    assert not verify_inclusion(LEAVES[3], 4, 4, proof, root)
    assert not verify_inclusion(LEAVES[3], -1, 4, proof, root)
    assert not verify_inclusion(LEAVES[0], 0, 0, [], H(b""))


def test_verify_rejects_proof_longer_than_the_path_even_if_the_hashes_add_up():
    # Extra elements past the top of a tree_size tree must be refused, not folded into the root.
    extra = H(b"extra")
    assert not verify_inclusion(LEAVES[0], 0, 1, [extra], N(extra, L(0)))
    proof = inclusion_proof(LEAVES[:4], 2)
    assert not verify_inclusion(LEAVES[2], 2, 4, [*proof, extra], N(extra, merkle_root(LEAVES[:4])))


@pytest.mark.parametrize(("size", "index"), [(0, 0), (3, 3), (3, 10), (3, -1)])
def test_inclusion_proof_out_of_range_raises(size, index):
    with pytest.raises(ValueError, match="out of range"):
        inclusion_proof(LEAVES[:size], index)


def test_large_tree_is_iterative():
    leaves = [i.to_bytes(4, "big") for i in range(100_000)]
    root = merkle_root(leaves)
    index = 77_777
    proof = inclusion_proof(leaves, index)
    assert len(proof) == 17
    assert verify_inclusion(leaves[index], index, len(leaves), proof, root)


def _mth(leaves: list[bytes]) -> bytes:
    """RFC 6962 section 2.1 MTH, recursively, as the reference."""
    n = len(leaves)
    if n == 0:
        return H(b"")
    if n == 1:
        return H(b"\x00" + leaves[0])
    k = 1 << ((n - 1).bit_length() - 1)
    return N(_mth(leaves[:k]), _mth(leaves[k:]))


def _path(m: int, leaves: list[bytes]) -> list[bytes]:
    """RFC 6962 section 2.1.1 PATH(m, D[n]), recursively, as the reference."""
    n = len(leaves)
    if n == 1:
        return []
    k = 1 << ((n - 1).bit_length() - 1)
    if m < k:
        return [*_path(m, leaves[:k]), _mth(leaves[k:])]
    return [*_path(m - k, leaves[k:]), _mth(leaves[:k])]


@pytest.mark.parametrize("size", range(1, 41))
def test_root_and_proofs_match_recursive_rfc6962_definition(size):
    leaves = LEAVES[:size]
    assert merkle_root(leaves) == _mth(leaves)
    for index in range(size):
        assert inclusion_proof(leaves, index) == _path(index, leaves)
