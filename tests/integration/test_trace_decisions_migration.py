"""The traces read model's approval decision and policy version (migration 0017): kept by the
sink's view for new traces, and computed from the stored events for traces stored before the
migration; the bulk trace CSV reads them from either the same way."""

from __future__ import annotations

import csv
import io

from schemas.codec import encode
from schemas.timefmt import format_ms
from schemas.topics import TRACE_EVENTS
from sinks.migrate import migrate
from sinks.repositories.traces import TraceExports, TraceQuery, TraceRepository
from tests.support.in_process import Pipeline, RecordingProducer

T0 = 1_795_428_000_000


def governed_trace(trace: str, start: int) -> list[dict]:
    """A trace whose approval is first denied and then granted, with a policy version on its second event."""
    def event(i: int, kind: str, **kw: object) -> dict:
        return {"event_id": f"{trace}-{i}", "org_id": "o", "trace_id": trace, "type": kind,
                "occurred_at": start + i * 1000, "scores": {}, "tags": [], "metadata": {}} | kw
    return [event(0, "trace_initiated", agent_id="agent-a"),
            event(1, "approval_requested", policy_version=4),
            event(2, "approval_denied", actor_name="=Eve"),
            event(3, "approval_granted", actor_name="Bob", policy_version=5)]


async def store(pipeline: Pipeline, events: list[dict]) -> None:
    batch = encode("TraceEventBatch", {"org_id": "o", "trace_id": events[0]["trace_id"], "events": events})
    await pipeline.producer.send_records(TRACE_EVENTS, [(events[0]["trace_id"].encode(), batch)])
    await pipeline.flush()


async def csv_rows(clickhouse) -> dict[str, dict[str, str]]:
    body, _ = await TraceExports(TraceRepository(clickhouse)).csv_chunk(
        "o", TraceQuery(T0 - 1, T0 + 86_400_000), 100, None)
    columns = ["trace_id", "agent_id", "agent_name", "operation", "target_integration", "resource_scope",
               "data_classification", "final_outcome", "started_at", "completed_at", "duration_ms",
               "approval_required", "approver_name", "approval_decision", "approval_decided_at", "policy_rule_id",
               "policy_version"]
    return {row["trace_id"]: row for row in csv.DictReader(io.StringIO(body.decode(), newline=""), columns)}


async def test_decisions_of_traces_stored_before_the_migration_match_the_views(clickhouse):
    pipeline = Pipeline(clickhouse, RecordingProducer())
    await store(pipeline, governed_trace("before", T0))
    db = clickhouse.database
    # as before the migration: no such columns (the view that fills them goes with them)
    await clickhouse.command(f"DROP VIEW {db}.traces_in_mv")
    await clickhouse.command(f"ALTER TABLE {db}.traces DROP COLUMN decision, DROP COLUMN policy_version")
    await clickhouse.command(f"ALTER TABLE {db}.schema_migrations DELETE WHERE version = 17 "
                             "SETTINGS mutations_sync = 2")
    assert "0017_trace_decisions.sql" in await migrate(clickhouse)
    await store(pipeline, governed_trace("after", T0 + 60_000))

    rows = await csv_rows(clickhouse)
    for trace in ("before", "after"):
        row = rows[trace]
        # the first decision is the denial: its approver, its time; the first policy version
        assert (row["approval_required"], row["approver_name"], row["approval_decision"]) == ("true", "'=Eve", "denied")
        start = T0 if trace == "before" else T0 + 60_000
        assert (row["started_at"], row["approval_decided_at"]) == (format_ms(start), format_ms(start + 2000))
        assert (row["policy_version"], row["agent_id"]) == ("4", "agent-a")
