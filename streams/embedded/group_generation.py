"""Keep aiokafka's group members when the embedded broker rebalances.

When a member joins, noida-db 0.2.3 starts the new generation at once and answers the
other members' offset commits and heartbeats with ILLEGAL_GENERATION; Apache Kafka answers
REBALANCE_IN_PROGRESS until the rebalance completes. On ILLEGAL_GENERATION aiokafka 0.14.0
forgets its member id and joins again as a new member, and noida-db, which never expires
members, then waits for the forgotten one forever: the group stays in CompletingRebalance
and the second consumer never gets a partition (measured 2026-12-05 with two aiokafka
consumers committing every 5 s; without commits the same two balanced at once).

:func:`install` rewrites that answer to REBALANCE_IN_PROGRESS, on which aiokafka rejoins
under the member id it has. A member the broker really forgot answers UNKNOWN_MEMBER_ID,
which is left alone. Install it only when the embedded broker is in use.
"""

from __future__ import annotations

import functools
from collections.abc import Awaitable, Callable
from typing import Any

from aiokafka.consumer.group_coordinator import GroupCoordinator
from aiokafka.errors import IllegalGenerationError, RebalanceInProgressError

_SendReq = Callable[..., Awaitable[Any]]

_original: _SendReq | None = None
_ILLEGAL, _REBALANCING = IllegalGenerationError.errno, RebalanceInProgressError.errno


def as_rebalancing(response: Any) -> Any:
    """``response`` with ILLEGAL_GENERATION replaced by REBALANCE_IN_PROGRESS where a
    heartbeat or an offset commit carries it; any other response unchanged."""
    name = type(response).__name__
    if name.startswith("HeartbeatResponse") and response.error_code == _ILLEGAL:
        response.error_code = _REBALANCING
    elif name.startswith("OffsetCommitResponse"):
        response.topics = [(topic, [(partition, _REBALANCING if error == _ILLEGAL else error, *rest)
                                    for partition, error, *rest in partitions])
                           for topic, partitions in response.topics]
    return response


def install() -> None:
    """Patch aiokafka's group coordinator (idempotent)."""
    global _original
    if _original is not None:
        return
    original = _original = GroupCoordinator._send_req

    @functools.wraps(original)
    async def _send_req(self: GroupCoordinator, request: Any) -> Any:
        return as_rebalancing(await original(self, request))

    GroupCoordinator._send_req = _send_req  # type: ignore[method-assign]


def uninstall() -> None:
    """Restore aiokafka's group coordinator (no-op if not installed)."""
    global _original
    if _original is not None:
        GroupCoordinator._send_req = _original  # type: ignore[method-assign]
        _original = None
