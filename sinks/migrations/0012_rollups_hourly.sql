-- Hourly rollups (seed 000's GET /v1/metrics and the rollups-hourly topic): event counts,
-- errors, tokens and cost per org, hour of occurred_at, type and outcome.
--
-- The view reads the sink's staging insert like the events view does. Exactly once: the sink
-- sets _rollup on a record only when the record's offset is past the highest one this table
-- holds for its source partition (the view's rows of one insert land in one part, in offset
-- order), and the view then counts every event of it. So a replay after a crash counts nothing
-- twice, even when the crash fell between the events view's part and this one. A late event
-- adds a partial row to its own hour, and readers sum the partial rows of an hour.
--
-- The staging table's columns are named through its alias (src): the view's own column names
-- (events, _partition, _offset) would shadow them.
--
-- Partial rows keep their source partition and highest offset: the rollup publisher
-- (streams/rollups.py) finds the hours changed since its last round by offset, per partition.
-- The sink writes each partition in offset order, so once an offset is visible every lower
-- one of that partition is too.

ALTER TABLE {db}.events_in ADD COLUMN IF NOT EXISTS _rollup UInt8 AFTER _summarize;

CREATE TABLE IF NOT EXISTS {db}.rollups_hourly
(
    org_id        LowCardinality(String),
    hour          DateTime('UTC'),
    type          String,
    outcome       Nullable(String),
    _topic        LowCardinality(String),
    _partition    UInt32,
    events        SimpleAggregateFunction(sum, UInt64),
    errors        SimpleAggregateFunction(sum, UInt64),
    input_tokens  SimpleAggregateFunction(sum, Int64),
    output_tokens SimpleAggregateFunction(sum, Int64),
    total_tokens  SimpleAggregateFunction(sum, Int64),
    cost          SimpleAggregateFunction(sum, Float64),
    _offset       SimpleAggregateFunction(max, UInt64),
    INDEX idx_offset _offset TYPE minmax GRANULARITY 1
)
ENGINE = AggregatingMergeTree
ORDER BY (org_id, hour, type, outcome, _topic, _partition)
SETTINGS allow_nullable_key = 1;

CREATE MATERIALIZED VIEW IF NOT EXISTS {db}.rollups_hourly_mv TO {db}.rollups_hourly AS
SELECT
    e.org_id AS org_id,
    toStartOfHour(toDateTime(intDiv(e.occurred_at, 1000), 'UTC')) AS hour,
    e.type AS type,
    e.outcome AS outcome,
    _topic,
    toUInt32(src._partition) AS _partition,
    count() AS events,
    countIf(ifNull(e.status = 'STATUS_CODE_ERROR', 0)) AS errors,
    sum(ifNull(e.input_tokens, 0)) AS input_tokens,
    sum(ifNull(e.output_tokens, 0)) AS output_tokens,
    sum(ifNull(e.total_tokens, ifNull(e.input_tokens, 0) + ifNull(e.output_tokens, 0))) AS total_tokens,
    sum(ifNull(e.cost, 0)) AS cost,
    max(toUInt64(src._offset)) AS _offset
FROM {db}.events_in AS src
ARRAY JOIN src.events AS e
WHERE src._rollup
GROUP BY org_id, hour, type, outcome, _topic, _partition;

-- The events stored before this migration (the sink is not running while migrations run).
INSERT INTO {db}.rollups_hourly
SELECT
    org_id,
    toStartOfHour(toDateTime(occurred_at, 'UTC')) AS hour,
    type,
    outcome,
    _topic,
    _partition,
    count(),
    countIf(ifNull(status = 'STATUS_CODE_ERROR', 0)),
    sum(ifNull(input_tokens, 0)),
    sum(ifNull(output_tokens, 0)),
    sum(ifNull(total_tokens, ifNull(input_tokens, 0) + ifNull(output_tokens, 0))),
    sum(ifNull(cost, 0)),
    max(_offset)
FROM {db}.events
GROUP BY org_id, hour, type, outcome, _topic, _partition;

-- Where the rollup publisher is: per source partition, the first offset it has not published.
CREATE TABLE IF NOT EXISTS {db}.rollup_marks
(
    _topic      String,
    _partition  UInt32,
    next_offset UInt64,
    saved_at    DateTime64(3, 'UTC') DEFAULT now64(3)
)
ENGINE = ReplacingMergeTree(next_offset)
ORDER BY (_topic, _partition)
