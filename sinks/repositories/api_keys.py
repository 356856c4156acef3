"""The ``api_keys`` table: org keys stored as sha256 of their secret."""

from __future__ import annotations

import hashlib
import secrets
from dataclasses import dataclass
from typing import Any

from schemas.timefmt import datetime_ms, format_ms, ms_datetime, now_ms
from sinks.clickhouse import ClickHouse

KEY_PREFIX = "th_"


@dataclass(frozen=True)
class ApiKey:
    key_id: str
    org_id: str
    name: str
    scopes: tuple[str, ...]
    created_at_ms: int
    revoked: bool = False

    def public(self) -> dict[str, Any]:
        return {"key_id": self.key_id, "org_id": self.org_id, "name": self.name,
                "scopes": list(self.scopes), "created_at": format_ms(self.created_at_ms),
                "revoked": self.revoked}


def split_token(token: str) -> tuple[str, str] | None:
    """``th_<key_id>_<secret>`` into (key_id, secret), or None when malformed."""
    if not token.startswith(KEY_PREFIX):
        return None
    key_id, sep, secret = token[len(KEY_PREFIX):].partition("_")
    if not sep or not key_id or not secret:
        return None
    return key_id, secret


def secret_hash(secret: str) -> bytes:
    return hashlib.sha256(secret.encode()).digest()


class ApiKeyRepository:
    """Creates, finds and revokes keys."""

    def __init__(self, ch: ClickHouse) -> None:
        self.ch = ch
        self.table = f"{ch.database}.api_keys"

    async def create(self, org_id: str, scopes: list[str], name: str) -> tuple[ApiKey, str]:
        """Store a new key; return it with its token (shown to the caller once)."""
        key_id = secrets.token_hex(8)
        secret = secrets.token_urlsafe(32)
        created = now_ms()
        await self._write(key_id, org_id, name, scopes, secret_hash(secret), created, None)
        return ApiKey(key_id, org_id, name, tuple(scopes), created), f"{KEY_PREFIX}{key_id}_{secret}"

    async def _write(self, key_id: str, org_id: str, name: str, scopes: list[str], digest: bytes,
                     created: int, revoked: int | None) -> None:
        await self.ch.command(
            f"INSERT INTO {self.table} (key_id, org_id, name, scopes, secret_sha256, created_at, "
            "revoked_at, version) VALUES ({k:String}, {o:String}, {n:String}, {s:Array(String)}, "
            "unhex({h:String}), {c:DateTime64(3, 'UTC')}, {r:Nullable(DateTime64(3, 'UTC'))}, {v:UInt64})",
            parameters={"k": key_id, "o": org_id, "n": name, "s": scopes, "h": digest.hex(),
                        "c": ms_datetime(created), "r": ms_datetime(revoked) if revoked else None,
                        "v": now_ms() * 1000 + (1 if revoked else 0)},
        )

    async def find(self, key_id: str) -> tuple[ApiKey, bytes] | None:
        """The newest version of a key and its secret hash."""
        rows = await self.ch.query(
            f"SELECT key_id, org_id, name, scopes, secret_sha256, created_at, revoked_at "
            f"FROM {self.table} FINAL WHERE key_id = {{k:String}}",
            {"k": key_id},
        )
        if not rows.rows:
            return None
        k, org, name, scopes, digest, created, revoked = rows.rows[0]
        digest = digest if isinstance(digest, bytes) else digest.encode("latin-1")
        return ApiKey(k, org, name, tuple(scopes), datetime_ms(created), revoked is not None), digest

    async def list(self, org_id: str) -> list[ApiKey]:
        rows = await self.ch.query(
            f"SELECT key_id, org_id, name, scopes, created_at, revoked_at FROM {self.table} FINAL "
            "WHERE org_id = {o:String} ORDER BY created_at", {"o": org_id})
        return [ApiKey(k, o, n, tuple(s), datetime_ms(c), r is not None) for k, o, n, s, c, r in rows.rows]

    async def revoke(self, key_id: str) -> ApiKey | None:
        found = await self.find(key_id)
        if found is None:
            return None
        key, digest = found
        await self._write(key.key_id, key.org_id, key.name, list(key.scopes), digest,
                          key.created_at_ms, now_ms())
        return ApiKey(key.key_id, key.org_id, key.name, key.scopes, key.created_at_ms, True)
