"""What the worker derives from its parts' declarations (streams/parts.py, streams/worker.py)."""

from __future__ import annotations

import pytest

from schemas.topics import (
    AUDIT_EVENTS,
    ROLLUPS_HOURLY,
    SEALED_EVENTS,
    TRACE_EVENTS,
    WEBHOOK_ATTEMPTS,
    WEBHOOK_DEAD_LETTER,
    WEBHOOK_EVENTS,
    WEBHOOK_SUBSCRIPTIONS,
)
from streams.app import HEADS_CHANGELOG
from streams.parts import Part, declared_parts, groups_of, readers_of, topics_of, trimmable
from streams.worker import chosen_parts
from tracehouse.settings import Settings


def test_a_chained_deployment_has_six_parts_and_every_group_is_evicted_by_name():
    parts = declared_parts(Settings(chain_events=True))
    assert [p.name for p in parts] == ["chain", "sink", "checkpointer", "rollups", "webhooks", "dispatch"]
    assert groups_of(parts) == ["tracehouse", "tracehouse-sink", "tracehouse-checkpoints", "tracehouse-rollups",
                                "tracehouse-webhooks", "tracehouse-webhook-dispatch"]
    assert [p.name for p in parts if p.needs_clickhouse] == ["sink", "checkpointer", "rollups"]


def test_trimming_follows_the_readers_and_leaves_kept_topics_and_changelogs_alone():
    parts = declared_parts(Settings(chain_events=True, webhook_retry_schedule="1s,2s"))
    assert trimmable(parts) == {
        TRACE_EVENTS: ["tracehouse"], AUDIT_EVENTS: ["tracehouse"], WEBHOOK_ATTEMPTS: ["tracehouse-sink"],
        WEBHOOK_DEAD_LETTER: ["tracehouse-sink"], WEBHOOK_EVENTS: ["tracehouse-webhooks"],
        **{t: ["tracehouse-webhook-dispatch"] for t in ("webhook-deliveries", "webhook-retry-1", "webhook-retry-2")}}
    # trimmed by the chain worker holding it, never past the sink's and the webhook fan-out's commits
    assert readers_of(parts, SEALED_EVENTS) == ["tracehouse-sink", "tracehouse-webhooks"]
    assert readers_of(parts, HEADS_CHANGELOG) == ["tracehouse-checkpoints"]
    assert HEADS_CHANGELOG not in topics_of(parts)


@pytest.mark.parametrize("chained", [True, False])
def test_the_sink_stores_the_webhook_subscriptions_and_their_topic_is_never_trimmed(chained):
    parts = declared_parts(Settings(chain_events=chained))
    assert readers_of(parts, WEBHOOK_SUBSCRIPTIONS) == ["tracehouse-sink"]
    assert WEBHOOK_SUBSCRIPTIONS in topics_of(parts)  # created with the others
    assert WEBHOOK_SUBSCRIPTIONS not in trimmable(parts)


def test_unchained_the_sink_reads_the_raw_topics():
    parts = declared_parts(Settings(chain_events=False))
    assert [p.name for p in parts] == ["sink", "rollups", "webhooks", "dispatch"]
    readers = ["tracehouse-sink", "tracehouse-webhooks"]
    assert trimmable(parts)[TRACE_EVENTS] == readers == trimmable(parts)[AUDIT_EVENTS]


def test_a_new_consumer_is_trimmed_after_once_declared():
    parts = declared_parts(Settings(chain_events=True))
    exporter = Part("export", lambda ch: None, group="tracehouse-export", reads=(ROLLUPS_HOURLY,))  # type: ignore
    assert ROLLUPS_HOURLY not in trimmable(parts)
    assert trimmable([*parts, exporter])[ROLLUPS_HOURLY] == ["tracehouse-export"]
    assert "tracehouse-export" in groups_of([*parts, exporter])


def test_parts_are_chosen_by_name_and_an_unknown_name_is_refused():
    settings = Settings(chain_events=True)
    assert [p.name for p in chosen_parts(settings, ["chain"])] == ["chain"]
    assert len(chosen_parts(settings)) == 6
    with pytest.raises(ValueError, match="unknown worker part.*chian"):
        chosen_parts(settings, ["chian"])
    with pytest.raises(ValueError, match="checkpointer"):  # not in an unchained deployment
        chosen_parts(Settings(chain_events=False), ["checkpointer"])
