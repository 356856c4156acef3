"""Webhook building blocks (Standard Webhooks): secrets, signatures, headers, bodies, delivery ids,
subscription filters, the retry schedule and the per-endpoint circuit breaker. Pure: no I/O, no clock
(callers pass ``now``), so the API and the dispatcher share one definition of each.

Standard Webhooks (https://www.standardwebhooks.com): a delivery carries ``webhook-id``,
``webhook-timestamp`` (Unix seconds) and ``webhook-signature``, ``v1,`` + base64 of HMAC-SHA256 over
``{id}.{timestamp}.{body}`` keyed by the bytes a ``whsec_`` secret encodes.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import json
import re
import secrets as _random
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Literal

from schemas.model import MAX_ID_LEN, ValidationError
from schemas.timefmt import format_ms

#: Event types a subscription may ask for.
EVENT_TYPES = ("trace.completed", "approval.requested", "audit.event.created", "trace.events", "webhook.test")
#: What a subscription filter may narrow by: an event's type, class and agent_id.
FILTER_KEYS = ("type", "class", "agent_id")
SECRET_PREFIX = "whsec_"
#: Random bytes in a generated secret; the spec accepts secrets of 24 to 64 bytes.
SECRET_BYTES = 24
MIN_SECRET_BYTES, MAX_SECRET_BYTES = 24, 64
#: Bytes of the SHA-256 digest kept in a delivery id (128 bits).
DELIVERY_ID_BYTES = 16
#: Retry schedule bounds: tiers, and the longest single delay (24 h).
MAX_RETRY_TIERS = 10
MAX_RETRY_DELAY_SECONDS = 86_400.0
_UNIT_SECONDS = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3_600.0}
_DURATION = re.compile(r"([0-9]+(?:\.[0-9]+)?)(ms|s|m|h)")

# -- secrets and signatures ------------------------------------------------------------------------


def new_secret() -> str:
    """A fresh signing secret: ``whsec_`` + base64 of 24 random bytes."""
    return SECRET_PREFIX + base64.b64encode(_random.token_bytes(SECRET_BYTES)).decode()


def secret_key(secret: str) -> bytes:
    """The HMAC key a ``whsec_`` secret encodes; ValueError unless it is ``whsec_`` + base64 of
    24 to 64 bytes."""
    if not isinstance(secret, str) or not secret.startswith(SECRET_PREFIX):
        raise ValueError(f"a secret starts with {SECRET_PREFIX}")
    try:
        key = base64.b64decode(secret[len(SECRET_PREFIX):], validate=True)
    except (binascii.Error, ValueError):
        raise ValueError(f"a secret is {SECRET_PREFIX} followed by base64") from None
    if not MIN_SECRET_BYTES <= len(key) <= MAX_SECRET_BYTES:
        raise ValueError(f"a secret encodes {MIN_SECRET_BYTES} to {MAX_SECRET_BYTES} bytes, not {len(key)}")
    return key


def signature(secrets: list[str], msg_id: str, timestamp: int, body: bytes) -> str:
    """The ``webhook-signature`` value: one ``v1,<base64 HMAC-SHA256>`` per secret, space-separated
    (during a rotation the old and the new secret both sign)."""
    if not secrets:
        raise ValueError("at least one secret signs a delivery")
    signed = f"{msg_id}.{int(timestamp)}.".encode() + body
    return " ".join(
        "v1," + base64.b64encode(hmac.new(secret_key(s), signed, hashlib.sha256).digest()).decode()
        for s in secrets)


def headers(secrets: list[str], msg_id: str, timestamp: int, body: bytes) -> dict[str, str]:
    """The HTTP headers of one delivery attempt (``timestamp``: Unix seconds of the attempt)."""
    return {"webhook-id": msg_id, "webhook-timestamp": str(int(timestamp)),
            "webhook-signature": signature(secrets, msg_id, timestamp, body),
            "content-type": "application/json"}


def payload(event_type: str, occurred_at_ms: int, data: dict[str, Any]) -> bytes:
    """The JSON body ``{"type", "timestamp", "data"}`` (timestamp: ISO 8601 UTC with milliseconds),
    compact; ValueError if ``data`` is not JSON (NaN, infinities, other objects)."""
    document = {"type": event_type, "timestamp": format_ms(occurred_at_ms), "data": data}
    try:
        return json.dumps(document, separators=(",", ":"), allow_nan=False).encode()
    except (TypeError, ValueError) as exc:
        raise ValueError(f"data is not JSON: {exc}") from None


def _base32(raw: bytes) -> str:
    return base64.b32encode(raw).decode().rstrip("=").lower()


def random_id(prefix: str) -> str:
    """``prefix`` + 26 lowercase base32 characters of 128 random bits (subscription and test event ids)."""
    return prefix + _base32(_random.token_bytes(16))


def delivery_id(event_id: str, subscription_id: str) -> str:
    """The ``webhook-id`` of event ``event_id`` to subscription ``subscription_id``: ``msg_`` + 26
    base32 characters of a SHA-256 over both, the same on every retry and replay (receivers dedupe on it)."""
    digest = hashlib.sha256(json.dumps([event_id, subscription_id]).encode()).digest()
    return "msg_" + _base32(digest[:DELIVERY_ID_BYTES])


def new_delivery(event_id: str, event_type: str, org_id: str, subscription_id: str, occurred_at_ms: int,
                 data: dict[str, Any], now_ms: int) -> dict[str, Any]:
    """The ``WebhookDelivery`` datum of event ``event_id`` to ``subscription_id``, due at once, no attempt made."""
    return {"id": delivery_id(event_id, subscription_id), "subscription_id": subscription_id, "org_id": org_id,
            "event_id": event_id, "type": event_type, "payload": payload(event_type, occurred_at_ms, data),
            "attempts": 0, "due_at": now_ms, "created_at": now_ms, "last_error": ""}


def unexpired(secrets: list[dict[str, Any]], now_ms: int) -> list[dict[str, Any]]:
    """The subscription secrets (``{secret, expires_at}``) that still sign at ``now_ms``: the current one
    (no expiry) and rotated-out ones inside their grace period."""
    return [s for s in secrets if s.get("expires_at") is None or s["expires_at"] > now_ms]


# -- subscription filters ----------------------------------------------------------------------------


@dataclass(frozen=True)
class Filter:
    """Which events a subscription receives: each field set must equal the event's ``type`` (a trace or
    audit event type such as ``GENERATION`` or ``approval_requested``), ``class`` and ``agent_id``,
    where the event has that attribute (unset: any). ``klass`` is ``class`` in JSON."""

    type: str | None = None
    klass: str | None = None
    agent_id: str | None = None

    def matches(self, attributes: Mapping[str, Any]) -> bool:
        """True if an event with ``attributes`` (its ``type``, ``class``, ``agent_id``, those it has) passes:
        a filter narrows only by the attributes an event has."""
        wanted = {"type": self.type, "class": self.klass, "agent_id": self.agent_id}
        return all(attributes[name] == value for name, value in wanted.items()
                   if value is not None and attributes.get(name) is not None)

    @classmethod
    def from_json(cls, value: Any, field: str = "filter") -> Filter:
        """The filter of the API's JSON ``{"type", "class", "agent_id"}`` (null or absent: match all);
        ``schemas.model.ValidationError`` (a ValueError) naming the field, e.g. ``filter.type``."""
        if value is None:
            return cls()
        if not isinstance(value, dict):
            raise ValidationError(field, "expected an object with type, class and agent_id")
        for key in value:
            if key not in ("type", "class", "agent_id"):
                raise ValidationError(f"{field}.{key}", "unknown field; expected type, class or agent_id")
        parsed = {name: _filter_value(f"{field}.{name}", value.get(name)) for name in ("type", "class", "agent_id")}
        return cls(type=parsed["type"], klass=parsed["class"], agent_id=parsed["agent_id"])

    def to_json(self) -> dict[str, str]:
        """The API's JSON form (only the fields set); ``from_json`` reads it back."""
        fields = {"type": self.type, "class": self.klass, "agent_id": self.agent_id}
        return {k: v for k, v in fields.items() if v is not None}


def _filter_value(field: str, value: Any) -> str | None:
    if value is None:
        return None
    if not isinstance(value, str) or not 0 < len(value) <= MAX_ID_LEN:
        raise ValidationError(field, f"expected a string of 1 to {MAX_ID_LEN} characters or null")
    return value


# -- retry schedule ----------------------------------------------------------------------------------


def parse_retry_schedule(text: str) -> tuple[float, ...]:
    """Seconds before each retry, from comma-separated durations with a unit (``ms``, ``s``, ``m``,
    ``h``), e.g. ``1m,5m,30m`` or ``200ms,400ms``: 1 to 10 tiers, each above 0 and at most 24 h."""
    items = [item.strip() for item in text.split(",")]
    if not 1 <= len(items) <= MAX_RETRY_TIERS:
        raise ValueError(f"expected 1 to {MAX_RETRY_TIERS} comma-separated durations, got {len(items)}")
    delays = []
    for item in items:
        match = _DURATION.fullmatch(item)
        if match is None:
            raise ValueError(f"{item!r} is not a duration such as 200ms, 5s, 1m or 2h")
        seconds = float(match[1]) * _UNIT_SECONDS[match[2]]
        if not 0 < seconds <= MAX_RETRY_DELAY_SECONDS:
            raise ValueError(f"{item!r} must be above 0 and at most 24h")
        delays.append(seconds)
    return tuple(delays)


# -- circuit breaker ---------------------------------------------------------------------------------

BreakerState = Literal["closed", "open", "half_open"]


@dataclass
class Breaker:
    """One endpoint's circuit breaker. ``threshold`` consecutive failures open it for ``cooldown``
    seconds (no attempts); then it is half-open: one attempt goes through (another only if that one
    reports nothing within ``cooldown``); a success closes it, a failure opens it again.
    Times are the caller's monotonic seconds."""

    threshold: int
    cooldown: float
    failures: int = 0
    opened_at: float | None = None
    probe_at: float | None = None

    def __post_init__(self) -> None:
        if self.threshold < 1 or not self.cooldown > 0:
            raise ValueError("a breaker needs threshold >= 1 and cooldown > 0")

    def state(self, now: float) -> BreakerState:
        if self.opened_at is None:
            return "closed"
        return "open" if now < self.opened_at + self.cooldown else "half_open"

    def allow(self, now: float) -> bool:
        """Whether an attempt may start now; in half-open this takes the one probe slot."""
        state = self.state(now)
        if state == "closed":
            return True
        if state == "open" or (self.probe_at is not None and now < self.probe_at + self.cooldown):
            return False
        self.probe_at = now
        return True

    def record(self, success: bool, now: float) -> None:
        """The outcome of an attempt that finished at ``now``."""
        if success:
            self.failures, self.opened_at, self.probe_at = 0, None, None
            return
        self.failures += 1
        if self.opened_at is not None or self.failures >= self.threshold:
            self.opened_at, self.probe_at = now, None


__all__ = ["EVENT_TYPES", "SECRET_PREFIX", "Breaker", "BreakerState", "Filter", "delivery_id", "headers",
           "new_secret", "parse_retry_schedule", "payload", "secret_key", "signature"]
