-- Trace keys by name (seed 002's tenant search: the traces whose first prompt_name, name or model
-- holds a text, case-insensitively). A search for a rare text scanned the org's traces until it
-- had a page (10M events, 2 cores, 2026-12-05: 5.0-5.7x the unfiltered list).
--
-- trace_names: one row per sealed record and distinct value among the record's first prompt_name,
-- name and model that are not null, with the trace's key. A trace's first value is one record's
-- first value, so every trace matching a search has a row whose value holds the text: the rows are
-- candidates, and a page checks the merged trace as it does for every filter. Rows repeat (a record
-- sent again after a crash, a value in several records of a trace): readers take distinct keys, and
-- the table collapses repeats as it merges.
-- trace_name_values: the org's distinct values with how many rows of trace_names hold each, so a
-- search finds the values holding its text in a table of names, and reads the keys of those values
-- only (or, when they hold many rows, scans the traces, where its matches are dense).
--
-- No exactly-once guard: a repeated row changes no answer (counts here only choose a plan). Traces
-- stored before this migration get their rows from the first values of their partial rows.

CREATE TABLE IF NOT EXISTS {db}.trace_names
(
    org_id     LowCardinality(String),
    value      String,
    started_at DateTime64(3, 'UTC'),
    trace_id   String
)
ENGINE = ReplacingMergeTree
ORDER BY (org_id, value, started_at, trace_id);

CREATE TABLE IF NOT EXISTS {db}.trace_name_values
(
    org_id LowCardinality(String),
    value  String,
    rows   SimpleAggregateFunction(sum, UInt64)
)
ENGINE = AggregatingMergeTree
ORDER BY (org_id, value);

CREATE MATERIALIZED VIEW IF NOT EXISTS {db}.trace_names_in_mv TO {db}.trace_names AS
SELECT
    src.org_id AS org_id,
    assumeNotNull(value) AS value,
    fromUnixTimestamp64Milli(src._started_at, 'UTC') AS started_at,
    src.trace_id AS trace_id
FROM {db}.events_in AS src
ARRAY JOIN arrayDistinct(arrayFilter(v -> v IS NOT NULL, [
    arrayFirst(v -> v IS NOT NULL, arrayMap(e -> e.prompt_name, src.events)),
    arrayFirst(v -> v IS NOT NULL, arrayMap(e -> e.name, src.events)),
    arrayFirst(v -> v IS NOT NULL, arrayMap(e -> e.model, src.events))])) AS value
WHERE src._first_seq > 0;

CREATE MATERIALIZED VIEW IF NOT EXISTS {db}.trace_name_values_in_mv TO {db}.trace_name_values AS
SELECT src.org_id AS org_id, assumeNotNull(value) AS value, toUInt64(count()) AS rows
FROM {db}.events_in AS src
ARRAY JOIN arrayDistinct(arrayFilter(v -> v IS NOT NULL, [
    arrayFirst(v -> v IS NOT NULL, arrayMap(e -> e.prompt_name, src.events)),
    arrayFirst(v -> v IS NOT NULL, arrayMap(e -> e.name, src.events)),
    arrayFirst(v -> v IS NOT NULL, arrayMap(e -> e.model, src.events))])) AS value
WHERE src._first_seq > 0
GROUP BY org_id, value;

INSERT INTO {db}.trace_names
SELECT org_id, value, started_at, trace_id
FROM {db}.traces
ARRAY JOIN arrayDistinct(arrayMap(v -> v.2, arrayFilter(v -> v.1 > 0, [prompt_name, name, model]))) AS value;

INSERT INTO {db}.trace_name_values
SELECT org_id, value, count()
FROM {db}.trace_names
GROUP BY org_id, value
