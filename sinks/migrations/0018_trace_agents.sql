-- Traces by agent (seed 003's agent_id filter): one row per trace that names an agent, keyed by
-- org, the trace's agent (its first event's agent_id that is not null) and the trace's key. A page
-- of one agent's traces and their exact count read a range of this key instead of merging the
-- org's partial rows in traces (10M events, 2 cores, 2026-12-05: the filtered first page took
-- 6.6-7.8x the unfiltered one and its count 130 ms).
--
-- The chain agent knows when a trace's agent becomes known: it marks the one sealed record holding
-- the trace's first event that names an agent (agent_named, staged as _agent_named). The view takes
-- that record's first agent_id. A record the sink sends again after a crash adds the same row
-- again, which ReplacingMergeTree collapses, and readers count distinct keys, so no replay flag is
-- needed. A head saved before this migration does not say whether its trace named an agent, so
-- the next record of a trace open across it that names one is marked again: its row repeats the
-- trace's unless that record's first agent differs from the trace's first. A page checks each
-- trace's merged agent, so it stays exact, while a count could then count that trace under both agents.
--
-- Traces stored before this migration get their row from their merged first agent.

ALTER TABLE {db}.events_in ADD COLUMN IF NOT EXISTS _agent_named UInt8 DEFAULT 0;

CREATE TABLE IF NOT EXISTS {db}.trace_agents
(
    org_id     LowCardinality(String),
    agent_id   String,
    started_at DateTime64(3, 'UTC'),
    trace_id   String
)
ENGINE = ReplacingMergeTree
ORDER BY (org_id, agent_id, started_at, trace_id);

CREATE MATERIALIZED VIEW IF NOT EXISTS {db}.trace_agents_in_mv TO {db}.trace_agents AS
SELECT
    org_id,
    assumeNotNull(argMin(e.agent_id, i)) AS agent_id,
    fromUnixTimestamp64Milli(_started_at, 'UTC') AS started_at,
    trace_id
FROM {db}.events_in
ARRAY JOIN events AS e, arrayEnumerate(events) AS i
WHERE _agent_named AND _first_seq > 0 AND e.agent_id IS NOT NULL
GROUP BY org_id, trace_id, _started_at;

INSERT INTO {db}.trace_agents
SELECT org_id, max(agent_id).2, started_at, trace_id
FROM {db}.traces
GROUP BY org_id, started_at, trace_id
HAVING max(agent_id).1 > 0
