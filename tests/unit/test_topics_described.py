"""``streams.topics._described``: a new topic is described again until its partitions are listed (Apache
Kafka describes a just-created topic with none for a moment; the integration tests run it on Kafka)."""

from __future__ import annotations

from typing import Any

from streams.topics import _described


class Admin:
    """Describes each topic with no partitions (and an error code) for its first ``late`` answers."""

    def __init__(self, late: int) -> None:
        self.late = late
        self.calls = 0

    async def describe_topics(self, topics: list[str]) -> list[dict[str, Any]]:
        self.calls += 1
        ready = self.calls > self.late
        return [{"topic": t, "error_code": 0 if ready else 3, "partitions": [{"partition": 0}] if ready else []}
                for t in topics]


async def test_a_topic_is_described_again_until_its_partitions_are_listed() -> None:
    admin = Admin(late=2)
    (topic,) = await _described(admin, ("t",))  # type: ignore[arg-type]
    assert admin.calls == 3 and topic["partitions"] == [{"partition": 0}]


async def test_after_the_timeout_the_last_answer_is_returned() -> None:
    admin = Admin(late=10**6)
    (topic,) = await _described(admin, ("t",), timeout=0.25)  # type: ignore[arg-type]
    assert topic["partitions"] == [] and topic["error_code"] == 3 and admin.calls >= 2
