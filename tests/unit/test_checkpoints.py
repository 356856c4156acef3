"""Checkpoints: chain-head leaves, signed statements, and ed25519 key handling."""

import base64
import hashlib
import json
import stat
from dataclasses import replace

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from schemas.checkpoints import (
    NO_PREVIOUS,
    Checkpoint,
    head_leaf,
    load_signing_key,
    parse_public_key,
    public_key_text,
    sign,
    verify_signature,
)

SEED = base64.b64encode(bytes(range(32))).decode()

CP = Checkpoint(
    number=3,
    period_start=1_795_428_000_000,
    period_end=1_795_428_060_000,
    tree_size=17,
    root="ab" * 32,
    previous="cd" * 32,
)


def test_head_leaf_is_canonical_json_of_the_chain_head():
    leaf = head_leaf("trace", "org-1", "trace-9", 42, "ef" * 32)
    expected = {"kind": "trace", "org_id": "org-1", "chain": "trace-9", "seq": 42, "hash": "ef" * 32}
    assert leaf == json.dumps(expected, sort_keys=True, separators=(",", ":")).encode()
    assert head_leaf("audit", "org-1", "org-1", 42, "ef" * 32) != head_leaf("trace", "org-1", "org-1", 42, "ef" * 32)


def test_head_leaf_is_utf8():
    assert head_leaf("trace", "orgé", "t", 1, "00").decode("utf-8").count("orgé") == 1


def test_statement_is_canonical_json_with_version():
    text = json.dumps(
        {"version": 1, "number": 3, "period_start": 1_795_428_000_000, "period_end": 1_795_428_060_000,
         "tree_size": 17, "root": "ab" * 32, "previous": "cd" * 32},
        sort_keys=True, separators=(",", ":"),
    )
    assert CP.statement() == text.encode()
    assert CP.digest() == hashlib.sha256(text.encode()).hexdigest()
    assert NO_PREVIOUS == "0" * 64


def test_json_round_trip():
    d = CP.to_json("c2ln")
    assert d["signature"] == "c2ln" and d["version"] == 1 and d["root"] == "ab" * 32
    assert Checkpoint.from_json(json.loads(json.dumps(d))) == (CP, "c2ln")


def test_from_json_rejects_other_versions_and_missing_fields():
    with pytest.raises(ValueError, match="version"):
        Checkpoint.from_json(CP.to_json("x") | {"version": 2})
    d = CP.to_json("x")
    del d["tree_size"]
    with pytest.raises(ValueError, match="tree_size"):
        Checkpoint.from_json(d)


def test_sign_and_verify_round_trip():
    key = Ed25519PrivateKey.generate()
    signature = sign(key, CP.statement())
    assert len(base64.b64decode(signature)) == 64
    assert verify_signature(key.public_key(), CP.statement(), signature)
    assert verify_signature(parse_public_key(public_key_text(key)), CP.statement(), signature)


@pytest.mark.parametrize(
    "changes",
    [{"number": 4}, {"period_start": 1}, {"period_end": 2}, {"tree_size": 18}, {"root": "ac" * 32},
     {"previous": NO_PREVIOUS}],
)
def test_statement_changed_in_one_field_fails_verification(changes):
    key = Ed25519PrivateKey.generate()
    signature = sign(key, CP.statement())
    changed = replace(CP, **changes)
    assert changed.digest() != CP.digest()
    assert not verify_signature(key.public_key(), changed.statement(), signature)


def test_verify_signature_is_false_for_wrong_key_and_malformed_signatures():
    key = Ed25519PrivateKey.generate()
    data = CP.statement()
    signature = sign(key, data)
    assert not verify_signature(Ed25519PrivateKey.generate().public_key(), data, signature)
    for bad in ["", "not base64!", signature[:-4], base64.b64encode(b"x" * 64).decode(), "é", signature + "AAAA"]:
        assert verify_signature(key.public_key(), data, bad) is False


def test_key_file_is_generated_private_and_reloaded(tmp_path):
    path = tmp_path / "keys" / "nested" / "checkpoint.pem"
    key = load_signing_key(path)
    assert path.exists()
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert path.read_bytes().startswith(b"-----BEGIN PRIVATE KEY-----")
    assert [p.name for p in path.parent.iterdir()] == ["checkpoint.pem"]  # no temp file left behind
    again = load_signing_key(path)
    assert public_key_text(again) == public_key_text(key)
    assert verify_signature(again.public_key(), b"data", sign(key, b"data"))


def test_distinct_key_files_hold_distinct_keys(tmp_path):
    a, b = load_signing_key(tmp_path / "a.pem"), load_signing_key(tmp_path / "b.pem")
    assert public_key_text(a) != public_key_text(b)


def test_seed_gives_a_deterministic_key_and_ignores_the_file(tmp_path):
    path = tmp_path / "unused.pem"
    first, second = load_signing_key(path, seed=SEED), load_signing_key(path, seed=SEED)
    assert public_key_text(first) == public_key_text(second)
    expected = Ed25519PrivateKey.from_private_bytes(bytes(range(32))).public_key()
    assert public_key_text(first) == public_key_text(expected)
    assert len(base64.b64decode(public_key_text(first))) == 32
    assert not path.exists()
    other = base64.b64encode(bytes(32)).decode()
    assert public_key_text(load_signing_key(path, seed=other)) != public_key_text(first)


@pytest.mark.parametrize("seed", ["not base64!", base64.b64encode(b"short").decode()])
def test_bad_seed_raises(tmp_path, seed):
    with pytest.raises(ValueError, match="seed"):
        load_signing_key(tmp_path / "k.pem", seed=seed)


def test_parse_public_key_accepts_base64_and_pem():
    key = Ed25519PrivateKey.generate()
    text = public_key_text(key)
    pem = key.public_key().public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
    assert pem.startswith(b"-----BEGIN PUBLIC KEY-----")
    assert public_key_text(parse_public_key(text)) == text
    assert public_key_text(parse_public_key(f"  {text}\n")) == text
    assert public_key_text(parse_public_key(pem.decode())) == text
    signature = sign(key, b"m")
    assert verify_signature(parse_public_key(pem.decode()), b"m", signature)


@pytest.mark.parametrize(
    "garbage",
    [
        "",
        "hello world",
        base64.b64encode(b"x" * 31).decode(),
        base64.b64encode(b"x" * 33).decode(),
        "-----BEGIN PUBLIC KEY-----\nAAAA\n-----END PUBLIC KEY-----\n",
    ],
)
def test_parse_public_key_rejects_garbage(garbage):
    with pytest.raises(ValueError):
        parse_public_key(garbage)


def test_parse_public_key_rejects_non_ed25519_pem():
    from cryptography.hazmat.primitives.asymmetric import ec

    pem = ec.generate_private_key(ec.SECP256R1()).public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    with pytest.raises(ValueError, match="ed25519"):
        parse_public_key(pem.decode())
