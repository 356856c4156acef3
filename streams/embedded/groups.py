"""Evict the consumer-group members of dead processes from the embedded broker.

noida-db never expires a member that died without leaving (kill -9): its session timeout is
not enforced, so the group waits for it at every rebalance and its partitions are never
handed to a live member. Apache Kafka expires such a member after its session timeout.

Every tracehouse process sharing the embedded broker registers its incarnation (pid and
token, ``schemas.identity``) in a registry directory (``<data dir>/processes/<pid>``). A member whose client id
names an incarnation that is not running any more (the pid is gone, or the file holds a
newer token because the process exec'd itself) is sent a LeaveGroup on its behalf; so is a
member of tracehouse's groups whose client id names no incarnation (a client of an older
version). Every process runs this each supervision round: evicting twice is harmless.
"""

from __future__ import annotations

import contextlib
import logging
import os
from pathlib import Path

from aiokafka import AIOKafkaClient
from aiokafka.errors import UnknownMemberIdError, for_code
from aiokafka.protocol.admin import DescribeGroupsRequest
from aiokafka.protocol.group import LeaveGroupRequest

from schemas.identity import PID, TOKEN, client_id, incarnation_of

log = logging.getLogger(__name__)

_GROUP_COORDINATOR = 0


def register(registry: Path) -> None:
    """Record this process incarnation as running (written again by an exec'd process)."""
    registry.mkdir(parents=True, exist_ok=True)
    tmp = registry / f".{PID}.tmp"
    tmp.write_text(TOKEN)
    tmp.replace(registry / str(PID))


def running(client: str, registry: Path) -> bool:
    """Whether ``client`` names a tracehouse process incarnation that is still running."""
    incarnation = incarnation_of(client)
    if incarnation is None:
        return False
    pid, token = incarnation
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # another user's process: alive, and not ours to judge
        return True
    with contextlib.suppress(OSError):
        return (registry / str(pid)).read_text() == token
    return False


async def evict_dead_members(bootstrap: str, group_ids: list[str], registry: Path) -> dict[str, list[str]]:
    """LeaveGroup every member of ``group_ids`` that no running incarnation owns; return the
    evicted member ids per group (an empty list for a group without such members)."""
    client = AIOKafkaClient(bootstrap_servers=bootstrap, client_id=client_id("tracehouse-evict"))
    await client.bootstrap()
    try:
        return {group: await _evict_dead(client, group, registry) for group in group_ids}
    finally:
        await client.close()


async def _evict_dead(client: AIOKafkaClient, group_id: str, registry: Path) -> list[str]:
    node_id = await client.coordinator_lookup(_GROUP_COORDINATOR, group_id)
    response = await client.send(node_id, DescribeGroupsRequest([group_id]))
    evicted: list[str] = []
    for error_code, name, state, _ptype, _proto, members, *_ in response.groups:
        if name != group_id or error_code:
            continue
        for member_id, member_client, *_ in members:
            if running(member_client, registry):
                continue
            left = await client.send(node_id, LeaveGroupRequest(group_id, member_id))
            if left.error_code and for_code(left.error_code) is not UnknownMemberIdError:  # already gone
                log.warning("LeaveGroup %s member %s: %s", group_id, member_id, for_code(left.error_code).__name__)
                continue
            log.info("evicted %s (%s, not running) from group %s [%s]", member_id, member_client, group_id, state)
            evicted.append(member_id)
    return evicted
