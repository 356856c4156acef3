"""Bearer keys: the operator key (TRACEHOUSE_ADMIN_KEY) and org keys with scopes."""

from __future__ import annotations

import hmac
import time
from dataclasses import dataclass

from aiohttp import web

from api.errors import ApiError
from api.params import is_utf8
from sinks.repositories.api_keys import ApiKeyRepository, secret_hash, split_token

SCOPES = ("traces:read", "traces:write", "audit:read", "audit:write", "webhooks:manage", "reviewer", "admin")
#: What a ``reviewer`` key may do besides its own scope (seed 003's bulk and single-trace exports):
#: read and export, never write. ``admin`` implies every scope.
REVIEWER_READS = frozenset({"traces:read", "audit:read"})


@dataclass(frozen=True)
class Principal:
    """Who is calling: an org key (org_id set) or the operator (org_id None)."""

    org_id: str | None
    scopes: frozenset[str]
    key_id: str

    @property
    def operator(self) -> bool:
        return self.org_id is None

    def allows(self, scope: str) -> bool:
        return scope in self.scopes or "admin" in self.scopes or (
            "reviewer" in self.scopes and scope in REVIEWER_READS)


class KeyVerifier:
    """Checks bearer tokens; verified org keys are cached for ``cache_seconds``."""

    def __init__(self, repo: ApiKeyRepository, admin_key: str | None, cache_seconds: float) -> None:
        self.repo = repo
        self.admin_key = admin_key
        self.cache_seconds = cache_seconds
        self._cache: dict[bytes, tuple[Principal, float]] = {}

    async def verify(self, token: str) -> Principal | None:
        if self.admin_key and hmac.compare_digest(token.encode(), self.admin_key.encode()):
            return Principal(None, frozenset({"admin"}), "operator")
        digest = secret_hash(token)
        hit = self._cache.get(digest)
        if hit is not None and hit[1] > time.monotonic():
            return hit[0]
        parts = split_token(token)
        if parts is None:
            return None
        found = await self.repo.find(parts[0])
        if found is None:
            return None
        key, stored = found
        if key.revoked or not hmac.compare_digest(secret_hash(parts[1]), stored):
            return None
        principal = Principal(key.org_id, frozenset(key.scopes), key.key_id)
        if len(self._cache) > 10_000:
            self._cache.clear()
        self._cache[digest] = (principal, time.monotonic() + self.cache_seconds)
        return principal

    def forget(self, key_id: str) -> None:
        """Drop a revoked key from this process's cache."""
        self._cache = {d: v for d, v in self._cache.items() if v[0].key_id != key_id}


async def authenticate(request: web.Request, verifier: KeyVerifier) -> Principal:
    """The caller of ``request``; 401 when the bearer key is missing or invalid."""
    header = request.headers.get("Authorization", "")
    scheme, _, token = header.partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        raise ApiError(401, "unauthorized", "missing bearer key: send 'Authorization: Bearer <key>'")
    token = token.strip()
    # header bytes that are not UTF-8 arrive as lone surrogates (surrogateescape): no key has them
    principal = await verifier.verify(token) if is_utf8(token) else None
    if principal is None:
        raise ApiError(401, "unauthorized", "invalid or revoked key")
    return principal


def require_scope(principal: Principal, scope: str) -> str:
    """The caller's org when it holds ``scope``; 403 otherwise (the operator key has no org)."""
    if principal.operator:
        raise ApiError(403, "forbidden", "the operator key manages keys only; use an org key")
    if not principal.allows(scope):
        raise ApiError(403, "forbidden", f"this key lacks the {scope} scope", {"scope": scope})
    assert principal.org_id is not None
    return principal.org_id
