"""Webhook vocabulary: the event types a subscription may name, signing secrets, filters.

Minimal: the subscription routes need only these three names.
"""

from __future__ import annotations

import base64
import secrets
from typing import Any

#: The ``WebhookEvent`` types a subscription may ask for.
EVENT_TYPES = ("trace.completed", "approval.requested", "audit.event.created", "trace.events", "webhook.test")

#: Keys a subscription filter may hold, each an exact match on the event's value.
FILTER_KEYS = ("type", "class", "agent_id")


def new_secret() -> str:
    """A Standard Webhooks signing secret: ``whsec_`` + base64 of 32 random bytes."""
    return "whsec_" + base64.b64encode(secrets.token_bytes(32)).decode()


def parse_filter(value: Any) -> dict[str, str]:
    """A filter from its JSON (an object of optional ``type``, ``class``, ``agent_id`` strings);
    ValueError naming the field (``filter`` or ``filter.<key>``) otherwise."""
    if value is None:
        return {}
    if not isinstance(value, dict):
        raise ValueError("filter: expected an object")
    out = {}
    for key, item in value.items():
        if key not in FILTER_KEYS:
            raise ValueError(f"filter.{key}: unknown key; expected {', '.join(FILTER_KEYS)}")
        if item is None:
            continue
        if not isinstance(item, str) or not 0 < len(item) <= 256:
            raise ValueError(f"filter.{key}: expected a string of 1 to 256 characters")
        out[key] = item
    return out
