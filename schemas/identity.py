"""Which process a Kafka client belongs to.

Every consumer and producer of a tracehouse process names itself ``<part>.<pid>.<token>``
(``client_id``): the token is drawn when the process starts (an ``exec`` into a fresh
tracehouse draws a new one), so a group member's client id tells an operator, and the
embedded broker's member eviction (``streams.embedded.groups``), which process incarnation
holds which partitions.
"""

from __future__ import annotations

import os
import re
import secrets

#: This process's incarnation: its pid and a token drawn at import.
PID, TOKEN = os.getpid(), secrets.token_hex(4)

_INCARNATION = re.compile(r"\.(\d+)\.([0-9a-f]{8})$")


def client_id(part: str) -> str:
    """The Kafka client id of ``part`` in this process incarnation."""
    return f"{part}.{PID}.{TOKEN}"


def incarnation_of(client: str) -> tuple[int, str] | None:
    """(pid, token) of a client id made by ``client_id``; None for any other client id."""
    match = _INCARNATION.search(client)
    return (int(match.group(1)), match.group(2)) if match else None
