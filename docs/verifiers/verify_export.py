#!/usr/bin/env python3
"""Verify a tracehouse single-trace export with the standard library and a JCS library only.

    pip install rfc8785
    python verify_export.py export.json PUBLIC_KEY_BASE64

Independent of tracehouse's code, it follows docs/verifying.md step by step:

1. every link: seq counts from 1, prev_hash is the previous link's hash (the first: 64 zeros), and
   hash = sha256 of the link minus its ``hash`` as RFC 8785 JSON (``hash_version`` 2) or as
   Python's sorted-keys JSON without ``hash_version`` (``hash_version`` 1, links sealed before
   2026-12-05);
2. the checkpoint statement (RFC 8785 JSON of its fields) is signed by the key (Ed25519: RFC 8032's
   verification, written out below because the standard library has none);
3. the chain's head at the checkpointed seq is the proof's leaf, and the leaf's RFC 6962 audit path
   leads to the signed root.

Exit status 0 when all of it holds, 1 otherwise.
"""

from __future__ import annotations

import base64
import hashlib
import json
import sys

import rfc8785

GENESIS = "0" * 64


def link_hash(link: dict) -> str:
    """What a stored link's hash must be."""
    version = link.get("hash_version", 1)
    if version == 2:
        document = {k: v for k, v in link.items() if k != "hash"}
        return hashlib.sha256(rfc8785.dumps(document)).hexdigest()
    if version == 1:
        document = {k: v for k, v in link.items() if k not in ("hash", "hash_version")}
        text = json.dumps(document, sort_keys=True, separators=(",", ":"), ensure_ascii=False, allow_nan=False)
        return hashlib.sha256(text.encode()).hexdigest()
    raise ValueError(f"unknown hash_version {version!r}")


def check_chain(chain: list[dict]) -> list[str]:
    problems, prev = [], GENESIS
    for expected_seq, link in enumerate(chain, 1):
        name = link.get("event_id")
        if link.get("seq") != expected_seq:
            problems.append(f"{name}: seq {link.get('seq')} where {expected_seq} was expected")
        elif link.get("prev_hash") != prev:
            problems.append(f"{name}: prev_hash is not the previous link's hash")
        elif link_hash(link) != link.get("hash"):
            problems.append(f"{name}: hash does not match the event's content")
        if problems:
            return problems
        prev = link["hash"]
    return problems


# --- Ed25519 verification (RFC 8032 section 5.1.7), integers only -----------------------------------------------

P = 2**255 - 19
L = 2**252 + 27742317777372353535851937790883648493
D = -121665 * pow(121666, P - 2, P) % P
SQRT_M1 = pow(2, (P - 1) // 4, P)
G_Y = 4 * pow(5, P - 2, P) % P


def _add(a: tuple, b: tuple) -> tuple:  # extended coordinates (X, Y, Z, T)
    x1, y1, z1, t1 = a
    x2, y2, z2, t2 = b
    aa, bb = (y1 - x1) * (y2 - x2) % P, (y1 + x1) * (y2 + x2) % P
    cc, dd = t1 * 2 * D * t2 % P, z1 * 2 * z2 % P
    e, f, g, h = bb - aa, dd - cc, dd + cc, bb + aa
    return e * f % P, g * h % P, f * g % P, e * h % P


def _mul(s: int, point: tuple) -> tuple:
    q = (0, 1, 1, 0)
    while s:
        if s & 1:
            q = _add(q, point)
        point = _add(point, point)
        s >>= 1
    return q


def _equal(a: tuple, b: tuple) -> bool:
    return (a[0] * b[2] - b[0] * a[2]) % P == 0 and (a[1] * b[2] - b[1] * a[2]) % P == 0


def _x(y: int, sign: int) -> int | None:
    if y >= P:
        return None
    x2 = (y * y - 1) * pow(D * y * y + 1, P - 2, P)
    if x2 == 0:
        return None if sign else 0
    x = pow(x2, (P + 3) // 8, P)
    if (x * x - x2) % P:
        x = x * SQRT_M1 % P
    if (x * x - x2) % P:
        return None
    return P - x if (x & 1) != sign else x


def _point(raw: bytes) -> tuple | None:
    y = int.from_bytes(raw, "little")
    sign, y = y >> 255, y & ((1 << 255) - 1)
    x = _x(y, sign)
    return None if x is None else (x, y, 1, x * y % P)


G = (_x(G_Y, 0), G_Y, 1, _x(G_Y, 0) * G_Y % P)


def ed25519_verify(public: bytes, message: bytes, signature: bytes) -> bool:
    if len(public) != 32 or len(signature) != 64:
        return False
    a, r = _point(public), _point(signature[:32])
    s = int.from_bytes(signature[32:], "little")
    if a is None or r is None or s >= L:
        return False
    h = int.from_bytes(hashlib.sha512(signature[:32] + public + message).digest(), "little") % L
    return _equal(_mul(s, G), _add(r, _mul(h, a)))


# --- RFC 6962 / 9162 inclusion proof ------------------------------------------------------------------------------

def included(leaf: bytes, index: int, size: int, path: list[bytes], root: bytes) -> bool:
    if not 0 <= index < size:
        return False
    fn, sn, r = index, size - 1, hashlib.sha256(b"\x00" + leaf).digest()
    for p in path:
        if sn == 0:
            return False
        if fn & 1 or fn == sn:
            r = hashlib.sha256(b"\x01" + p + r).digest()
            while fn and not fn & 1:
                fn >>= 1
                sn >>= 1
        else:
            r = hashlib.sha256(b"\x01" + r + p).digest()
        fn >>= 1
        sn >>= 1
    return sn == 0 and r == root


STATEMENT = ("version", "number", "period_start", "period_end", "tree_size", "root", "previous")


def check_anchor(export: dict, public_key: bytes) -> list[str]:
    chain, proof = export["integrity"]["chain"], export["integrity"]["proof"]
    if proof is None:
        return ["no checkpoint covers this trace yet"]
    checkpoint, leaf = proof["checkpoint"], proof["leaf"]
    problems = []
    statement = rfc8785.dumps({k: checkpoint[k] for k in STATEMENT})
    if not ed25519_verify(public_key, statement, base64.b64decode(checkpoint["signature"])):
        problems.append(f"checkpoint {checkpoint['number']} is not signed by this key")
    if (leaf["kind"], leaf["org_id"], leaf["chain"]) != ("trace", chain[0]["org_id"], export["trace"]["id"]):
        problems.append("the proof is for another chain")
    if not 1 <= leaf["seq"] <= len(chain) or chain[leaf["seq"] - 1]["hash"] != leaf["hash"]:
        problems.append(f"the chain's link {leaf['seq']} is not the checkpointed head")
    raw_leaf = rfc8785.dumps({k: leaf[k] for k in ("kind", "org_id", "chain", "seq", "hash")})
    if not included(raw_leaf, proof["leaf_index"], checkpoint["tree_size"], [bytes.fromhex(h) for h in proof["path"]],
                    bytes.fromhex(checkpoint["root"])):
        problems.append("the head is not included in the checkpoint's root")
    return problems


def main(path: str, public_key_base64: str) -> int:
    with open(path, encoding="utf-8") as f:
        export = json.load(f)
    chain = export["integrity"]["chain"]
    problems = check_chain(chain) if chain else ["the export holds no events"]
    problems += check_anchor(export, base64.b64decode(public_key_base64)) if chain else []
    for problem in problems:
        print(f"FAILED: {problem}")
    print(f"export verified: {len(chain)} links" if not problems else "export NOT verified")
    return 0 if not problems else 1


if __name__ == "__main__":
    sys.exit(main(*sys.argv[1:3]))
