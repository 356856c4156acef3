"""A batch's writes to a table wrapped ``first`` (the chain agents' archived id buckets) are
acknowledged before the rest of the batch (the head that counts them) is sent."""

import asyncio

from streams.changelog import DeferredChangelog


class Table:
    def __init__(self) -> None:
        self.data: dict[bytes, bytes] = {}
        self.sent: list[bytes] = []
        self.acks: list[asyncio.Future] = []

    def send_changelog(self, partition, key, value, value_serializer=None) -> asyncio.Future:
        self.sent.append(key)
        self.acks.append(asyncio.get_running_loop().create_future())
        return self.acks[-1]


def test_the_head_is_sent_only_once_its_archived_bucket_is_acknowledged():
    async def go():
        changelog = DeferredChangelog()
        archive, heads = Table(), Table()
        archived, head = changelog.wrap(archive, first=True), changelog.wrap(heads)
        archived[b"chain#0"] = b"ids"
        head[b"chain"] = b"head"
        sending = asyncio.ensure_future(changelog.take().send_in_order(0))
        await asyncio.sleep(0)
        assert archive.sent == [b"chain#0"] and heads.sent == []  # the head waits for the bucket
        archive.acks[0].set_result(None)
        await asyncio.wait_for(sending, 1.0)
        assert heads.sent == [b"chain"]

    asyncio.run(go())


def test_a_batch_without_first_writes_is_sent_at_once():
    async def go():
        changelog = DeferredChangelog()
        heads = Table()
        changelog.wrap(Table(), first=True)
        changelog.wrap(heads)[b"chain"] = b"head"
        await asyncio.wait_for(changelog.take().send_in_order(0), 1.0)
        assert heads.sent == [b"chain"]

    asyncio.run(go())
