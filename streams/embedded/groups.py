"""Evict dead consumer-group members from the embedded broker.

noida-db never expires the members of a consumer that died without leaving
(kill -9): its session timeout is not enforced, so a restarted worker waits
in CompletingRebalance for members that will never sync. In embedded mode
there is one worker, so before it joins we ask the group coordinator who the
members are (DescribeGroups) and send LeaveGroup for each of them.

Only call this while no live consumer of these groups runs: it evicts every
member it finds.
"""

from __future__ import annotations

import logging

from aiokafka import AIOKafkaClient
from aiokafka.errors import for_code
from aiokafka.protocol.admin import DescribeGroupsRequest
from aiokafka.protocol.group import LeaveGroupRequest

log = logging.getLogger(__name__)

_GROUP_COORDINATOR = 0


async def evict_stale_members(bootstrap: str, group_ids: list[str]) -> dict[str, list[str]]:
    """LeaveGroup every member of each group; return the evicted member ids per group.

    A group that does not exist or has no members maps to an empty list.
    """
    client = AIOKafkaClient(bootstrap_servers=bootstrap, client_id="tracehouse-evict")
    await client.bootstrap()
    try:
        return {group: await _evict_group(client, group) for group in group_ids}
    finally:
        await client.close()


async def _evict_group(client: AIOKafkaClient, group_id: str) -> list[str]:
    node_id = await client.coordinator_lookup(_GROUP_COORDINATOR, group_id)
    response = await client.send(node_id, DescribeGroupsRequest([group_id]))
    evicted: list[str] = []
    for error_code, name, state, _ptype, _proto, members, *_ in response.groups:
        if name != group_id:
            continue
        if error_code:
            log.info("describe group %s: %s", group_id, for_code(error_code).__name__)
            continue
        for member_id, client_id, *_ in members:
            left = await client.send(node_id, LeaveGroupRequest(group_id, member_id))
            if left.error_code:
                log.warning(
                    "LeaveGroup %s member %s: %s",
                    group_id,
                    member_id,
                    for_code(left.error_code).__name__,
                )
                continue
            log.info("evicted %s (%s) from group %s [%s]", member_id, client_id, group_id, state)
            evicted.append(member_id)
    return evicted
