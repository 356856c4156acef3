"""Signed checkpoints of hash chains: the leaves they commit to, the statement they sign, and ed25519 keys.

A checkpoint covers the chain heads of one period: one leaf per chain (``head_leaf``), committed to by the RFC 6962
Merkle root of those leaves (``schemas.merkle``). Its statement, the RFC 8785 (JCS) JSON of its fields, also names
the digest of the previous checkpoint's statement, so checkpoints form a chain of their own. Statements are signed
with ed25519; public keys travel as the base64 of their 32 raw bytes. Leaves and statements hold only ASCII member
names, strings and integers, where JCS and the sorted-keys JSON used before 2026-12-05 write the same bytes, so
every earlier checkpoint and proof still verifies.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import os
import pathlib
import tempfile
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

from schemas.jcs import canonicalize
from schemas.timefmt import format_ms

#: The ``previous`` of the first checkpoint.
NO_PREVIOUS = "0" * 64
STATEMENT_VERSION = 1


def head_leaf(kind: str, org_id: str, chain_id: str, seq: int, hash_hex: str) -> bytes:
    """The Merkle leaf of one chain head: JCS JSON of kind ("trace"/"audit"), org, chain, seq and hash."""
    doc = {"kind": kind, "org_id": org_id, "chain": chain_id, "seq": seq, "hash": hash_hex}
    return canonicalize(doc).encode("utf-8")


@dataclass(frozen=True)
class Checkpoint:
    """One checkpoint: the Merkle root over the chain heads of a period, linked to the previous checkpoint."""

    number: int
    period_start: int  # epoch ms
    period_end: int  # epoch ms
    tree_size: int
    root: str  # hex
    previous: str  # hex digest of the previous checkpoint's statement, or NO_PREVIOUS

    def _fields(self) -> dict[str, Any]:
        return {
            "version": STATEMENT_VERSION,
            "number": self.number,
            "period_start": self.period_start,
            "period_end": self.period_end,
            "tree_size": self.tree_size,
            "root": self.root,
            "previous": self.previous,
        }

    def statement(self) -> bytes:
        """The bytes that are signed: JCS JSON of the version and all fields."""
        return canonicalize(self._fields()).encode("utf-8")

    def digest(self) -> str:
        """The sha256 hex digest of ``statement()``: what the next checkpoint's ``previous`` holds."""
        return hashlib.sha256(self.statement()).hexdigest()

    def to_json(self, signature: str) -> dict[str, Any]:
        """A JSON-ready dict of the statement's members plus ``signature`` (base64)."""
        return self._fields() | {"signature": signature}

    @staticmethod
    def from_json(d: Mapping[str, Any]) -> tuple[Checkpoint, str]:
        """The checkpoint and signature of a ``to_json`` dict; ValueError if malformed or of another version."""
        if d.get("version") != STATEMENT_VERSION:
            raise ValueError(f"unsupported checkpoint version: {d.get('version')!r}")
        try:
            cp = Checkpoint(
                number=d["number"],
                period_start=d["period_start"],
                period_end=d["period_end"],
                tree_size=d["tree_size"],
                root=d["root"],
                previous=d["previous"],
            )
            signature = d["signature"]
        except KeyError as exc:
            raise ValueError(f"checkpoint is missing {exc.args[0]!r}") from None
        return cp, signature


@dataclass(frozen=True)
class SignedCheckpoint:
    """A checkpoint with its signature and the public key that checks it."""

    checkpoint: Checkpoint
    signature: str
    public_key: str

    def to_json(self) -> dict[str, Any]:
        """The statement's members, readable timestamps beside them, the signature and key."""
        c = self.checkpoint
        return c.to_json(self.signature) | {"public_key": self.public_key, "digest": c.digest(),
                                            "period_start_iso": format_ms(c.period_start),
                                            "period_end_iso": format_ms(c.period_end)}


@dataclass(frozen=True)
class Leaf:
    """One chain head in a checkpoint."""

    kind: str  # trace or audit
    org_id: str
    chain_id: str  # trace_id, or org_id for the audit log
    seq: int
    hash: str


def load_signing_key(path: pathlib.Path, seed: str | None = None) -> Ed25519PrivateKey:
    """The signing key: from ``seed`` (base64 of the 32 raw private bytes) if given, else the PKCS8 PEM at ``path``,
    generated and written there (mode 0o600, atomically) when it does not exist yet."""
    if seed is not None:
        try:
            raw = base64.b64decode(seed.strip(), validate=True)
        except binascii.Error as exc:
            raise ValueError(f"signing key seed is not valid base64: {exc}") from None
        if len(raw) != 32:
            raise ValueError(f"signing key seed must be 32 bytes, got {len(raw)}")
        return Ed25519PrivateKey.from_private_bytes(raw)
    path = pathlib.Path(path)
    if path.exists():
        key = serialization.load_pem_private_key(path.read_bytes(), password=None)
        if not isinstance(key, Ed25519PrivateKey):
            raise ValueError(f"{path} does not hold an ed25519 private key")
        return key
    key = Ed25519PrivateKey.generate()
    pem = key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())
    if not _write_private(path, pem):  # another process wrote its key first: that one signs
        return load_signing_key(path)
    return key


def public_key_of(path: pathlib.Path, seed: str | None = None) -> str | None:
    """The public key (``public_key_text``) of the signing key ``load_signing_key`` would load, or None
    when there is no seed and no key file yet. Never generates a key: an API without the key reads it
    from the checkpoints instead."""
    if seed is None and not pathlib.Path(path).exists():
        return None
    return public_key_text(load_signing_key(path, seed))


def _write_private(path: pathlib.Path, data: bytes) -> bool:
    """Write ``data`` to ``path`` with mode 0o600 via a temp file in the same directory, unless ``path``
    exists by then (False: another process created it first; never replaced)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")  # mkstemp: mode 0o600
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.chmod(tmp, 0o600)
        try:
            os.link(tmp, path)  # fails if the path exists: two processes never hold different keys
        except FileExistsError:
            return False
        finally:
            pathlib.Path(tmp).unlink(missing_ok=True)
        return True
    except BaseException:
        pathlib.Path(tmp).unlink(missing_ok=True)
        raise


def public_key_text(key: Ed25519PrivateKey | Ed25519PublicKey) -> str:
    """The base64 (standard alphabet) of the 32 raw public key bytes of ``key``."""
    public = key.public_key() if isinstance(key, Ed25519PrivateKey) else key
    raw = public.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
    return base64.b64encode(raw).decode("ascii")


def parse_public_key(text: str) -> Ed25519PublicKey:
    """An ed25519 public key from its base64 raw form or PEM text; ValueError for anything else."""
    text = text.strip()
    if text.startswith("-----BEGIN PUBLIC KEY-----"):
        try:
            key = serialization.load_pem_public_key(text.encode("ascii"))
        except (ValueError, UnicodeEncodeError) as exc:
            raise ValueError(f"invalid PEM public key: {exc}") from None
        if not isinstance(key, Ed25519PublicKey):
            raise ValueError("PEM public key is not an ed25519 key")
        return key
    try:
        raw = base64.b64decode(text, validate=True)
    except (binascii.Error, ValueError):
        raise ValueError("public key must be the base64 of 32 raw ed25519 bytes or a PEM public key") from None
    if len(raw) != 32:
        raise ValueError(f"public key must be 32 bytes of base64 (got {len(raw)} bytes) or a PEM public key")
    return Ed25519PublicKey.from_public_bytes(raw)


def sign(key: Ed25519PrivateKey, data: bytes) -> str:
    """The base64 ed25519 signature of ``data``."""
    return base64.b64encode(key.sign(data)).decode("ascii")


def verify_signature(public_key: Ed25519PublicKey, data: bytes, signature_b64: str) -> bool:
    """Whether ``signature_b64`` is a valid signature of ``data``; False (never raises) for bad or malformed ones."""
    try:
        public_key.verify(base64.b64decode(signature_b64, validate=True), data)
    except (InvalidSignature, binascii.Error, ValueError, TypeError):
        return False
    return True
