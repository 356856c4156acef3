-- The traces read model: one row per trace once merged, ordered by org then start,
-- for the list surfaces (seed 002 tenant traces, seed 003 governance traces).
--
-- Each insert adds one partial row per trace it holds, aggregated from the sealed batches'
-- events. AggregatingMergeTree merges a trace's partial rows with the functions named in
-- the column types, and readers merge the rows not yet merged the same way
-- (sinks/repositories/traces.py). started_at, the trace's first link's time, comes with every
-- sealed trace record, so all partial rows of a trace share one sort key.
--
-- First values: (2^64 - 1 - seq, value) of the first event (lowest seq) that holds the field,
-- so max() keeps the earliest, and (0, '') when no event of the row holds it.
--
-- Exactly once: the sink sends every record once more after a crash, whole, with _stored (the
-- indexes of its events already in events) and _summarize (false when its partial row is already
-- in traces: one part per insert, so max(_offset) per partition tells).

ALTER TABLE {db}.events_in
    ADD COLUMN IF NOT EXISTS _started_at Int64 AFTER _hashes,
    ADD COLUMN IF NOT EXISTS _final_outcome Nullable(String) AFTER _started_at,
    ADD COLUMN IF NOT EXISTS _completed_at Nullable(Int64) AFTER _final_outcome,
    ADD COLUMN IF NOT EXISTS _stored Array(Int64) AFTER _completed_at,
    ADD COLUMN IF NOT EXISTS _summarize UInt8 AFTER _stored;

ALTER TABLE {db}.audit_events_in
    ADD COLUMN IF NOT EXISTS _stored Array(Int64) AFTER _hashes,
    ADD COLUMN IF NOT EXISTS _summarize UInt8 AFTER _stored;

CREATE TABLE IF NOT EXISTS {db}.traces
(
    org_id              LowCardinality(String),
    started_at          DateTime64(3, 'UTC'),
    trace_id            String,
    event_count         SimpleAggregateFunction(max, UInt64),
    last_event_at       SimpleAggregateFunction(max, DateTime64(3, 'UTC')),
    final_outcome       SimpleAggregateFunction(max, Nullable(String)),
    completed_at        SimpleAggregateFunction(max, Nullable(DateTime64(3, 'UTC'))),
    has_approval        SimpleAggregateFunction(max, UInt8),
    has_error           SimpleAggregateFunction(max, UInt8),
    input_tokens        SimpleAggregateFunction(sum, Int64),
    output_tokens       SimpleAggregateFunction(sum, Int64),
    total_tokens        SimpleAggregateFunction(sum, Int64),
    cost                SimpleAggregateFunction(sum, Float64),
    tags                SimpleAggregateFunction(groupUniqArrayArray, Array(String)),
    agent_id            SimpleAggregateFunction(max, Tuple(UInt64, String)),
    agent_name          SimpleAggregateFunction(max, Tuple(UInt64, String)),
    authority_model     SimpleAggregateFunction(max, Tuple(UInt64, String)),
    requested_operation SimpleAggregateFunction(max, Tuple(UInt64, String)),
    target_integration  SimpleAggregateFunction(max, Tuple(UInt64, String)),
    resource_scope      SimpleAggregateFunction(max, Tuple(UInt64, String)),
    parent_trace_id     SimpleAggregateFunction(max, Tuple(UInt64, String)),
    data_classification SimpleAggregateFunction(max, Tuple(UInt64, String)),
    policy_rule_id      SimpleAggregateFunction(max, Tuple(UInt64, String)),
    prompt_name         SimpleAggregateFunction(max, Tuple(UInt64, String)),
    name                SimpleAggregateFunction(max, Tuple(UInt64, String)),
    model               SimpleAggregateFunction(max, Tuple(UInt64, String)),
    model_config        SimpleAggregateFunction(max, Tuple(UInt64, String)),
    cost_currency       SimpleAggregateFunction(max, Tuple(UInt64, String)),
    user_id             SimpleAggregateFunction(max, Tuple(UInt64, String)),
    session_id          SimpleAggregateFunction(max, Tuple(UInt64, String)),
    _partition          SimpleAggregateFunction(max, UInt32),
    _offset             SimpleAggregateFunction(max, UInt64),
    INDEX idx_trace_id trace_id TYPE bloom_filter(0.01) GRANULARITY 1
)
ENGINE = AggregatingMergeTree
ORDER BY (org_id, started_at, trace_id);

CREATE MATERIALIZED VIEW IF NOT EXISTS {db}.traces_in_mv TO {db}.traces AS
WITH toUInt64(_first_seq + i - 1) AS seq
SELECT
    org_id,
    fromUnixTimestamp64Milli(_started_at, 'UTC') AS started_at,
    trace_id,
    max(seq) AS event_count,
    max(fromUnixTimestamp64Milli(greatest(e.occurred_at, ifNull(e.end_time, e.occurred_at)), 'UTC')) AS last_event_at,
    max(_final_outcome) AS final_outcome,
    max(fromUnixTimestamp64Milli(_completed_at, 'UTC')) AS completed_at,
    max(e.type = 'approval_requested') AS has_approval,
    max(ifNull(e.status = 'STATUS_CODE_ERROR', 0)) AS has_error,
    sum(ifNull(e.input_tokens, 0)) AS input_tokens,
    sum(ifNull(e.output_tokens, 0)) AS output_tokens,
    sum(ifNull(e.total_tokens, ifNull(e.input_tokens, 0) + ifNull(e.output_tokens, 0))) AS total_tokens,
    sum(ifNull(e.cost, 0)) AS cost,
    groupUniqArrayArray(e.tags) AS tags,
    maxIf((18446744073709551615 - seq, assumeNotNull(e.agent_id)), e.agent_id IS NOT NULL) AS agent_id,
    maxIf((18446744073709551615 - seq, assumeNotNull(e.agent_name)), e.agent_name IS NOT NULL) AS agent_name,
    maxIf((18446744073709551615 - seq, assumeNotNull(e.authority_model)), e.authority_model IS NOT NULL) AS authority_model,
    maxIf((18446744073709551615 - seq, assumeNotNull(e.requested_operation)), e.requested_operation IS NOT NULL) AS requested_operation,
    maxIf((18446744073709551615 - seq, assumeNotNull(e.target_integration)), e.target_integration IS NOT NULL) AS target_integration,
    maxIf((18446744073709551615 - seq, assumeNotNull(e.resource_scope)), e.resource_scope IS NOT NULL) AS resource_scope,
    maxIf((18446744073709551615 - seq, assumeNotNull(e.parent_trace_id)), e.parent_trace_id IS NOT NULL) AS parent_trace_id,
    maxIf((18446744073709551615 - seq, assumeNotNull(e.data_classification)), e.data_classification IS NOT NULL) AS data_classification,
    maxIf((18446744073709551615 - seq, assumeNotNull(e.policy_rule_id)), e.policy_rule_id IS NOT NULL) AS policy_rule_id,
    maxIf((18446744073709551615 - seq, assumeNotNull(e.prompt_name)), e.prompt_name IS NOT NULL) AS prompt_name,
    maxIf((18446744073709551615 - seq, assumeNotNull(e.name)), e.name IS NOT NULL) AS name,
    maxIf((18446744073709551615 - seq, assumeNotNull(e.model)), e.model IS NOT NULL) AS model,
    maxIf((18446744073709551615 - seq, assumeNotNull(e.model_config)), e.model_config IS NOT NULL) AS model_config,
    maxIf((18446744073709551615 - seq, assumeNotNull(e.cost_currency)), e.cost_currency IS NOT NULL) AS cost_currency,
    maxIf((18446744073709551615 - seq, assumeNotNull(e.user_id)), e.user_id IS NOT NULL) AS user_id,
    maxIf((18446744073709551615 - seq, assumeNotNull(e.session_id)), e.session_id IS NOT NULL) AS session_id,
    max(_partition) AS _partition,
    max(_offset) AS _offset
FROM {db}.events_in
ARRAY JOIN events AS e, arrayEnumerate(events) AS i
WHERE _first_seq > 0 AND _summarize
GROUP BY org_id, trace_id, _started_at;

DROP VIEW IF EXISTS {db}.events_in_mv;

CREATE MATERIALIZED VIEW IF NOT EXISTS {db}.events_in_mv TO {db}.events AS
SELECT
    e.event_id AS event_id,
    e.org_id AS org_id,
    e.trace_id AS trace_id,
    e.parent_id AS parent_id,
    e.class AS class,
    e.type AS type,
    e.name AS name,
    fromUnixTimestamp64Milli(e.occurred_at, 'UTC') AS occurred_at,
    fromUnixTimestamp64Milli(e.end_time, 'UTC') AS end_time,
    e.status AS status,
    e.model AS model,
    e.model_config AS model_config,
    e.user_id AS user_id,
    e.session_id AS session_id,
    e.agent_id AS agent_id,
    e.agent_name AS agent_name,
    e.actor_type AS actor_type,
    e.actor_name AS actor_name,
    e.prompt_name AS prompt_name,
    e.description AS description,
    e.outcome AS outcome,
    e.input AS input,
    e.output AS output,
    e.messages AS messages,
    e.tools AS tools,
    e.tool_choice AS tool_choice,
    e.input_tokens AS input_tokens,
    e.output_tokens AS output_tokens,
    e.total_tokens AS total_tokens,
    e.cost AS cost,
    e.cost_currency AS cost_currency,
    e.scores AS scores,
    e.tags AS tags,
    e.metadata AS metadata,
    e.policy_version AS policy_version,
    e.approval_request_id AS approval_request_id,
    e.authority_model AS authority_model,
    e.requested_operation AS requested_operation,
    e.target_integration AS target_integration,
    e.resource_scope AS resource_scope,
    e.data_classification AS data_classification,
    e.policy_rule_id AS policy_rule_id,
    e.parent_trace_id AS parent_trace_id,
    if(_first_seq = 0, 0, _first_seq + i - 1) AS seq,
    toFixedString(if(i = 1, _prev_hash, _hashes[i - 1]), 32) AS prev_hash,
    toFixedString(_hashes[i], 32) AS hash,
    _topic, _partition, _offset
FROM {db}.events_in
ARRAY JOIN events AS e, arrayEnumerate(events) AS i
WHERE NOT has(_stored, i);

DROP VIEW IF EXISTS {db}.audit_events_in_mv;

CREATE MATERIALIZED VIEW IF NOT EXISTS {db}.audit_events_in_mv TO {db}.audit_events AS
SELECT
    e.id AS id,
    e.org_id AS org_id,
    e.actor AS actor,
    e.action AS action,
    e.target AS target,
    e.metadata AS metadata,
    fromUnixTimestamp64Milli(e.occurred_at, 'UTC') AS occurred_at,
    if(_first_seq = 0, 0, _first_seq + i - 1) AS seq,
    toFixedString(if(i = 1, _prev_hash, _hashes[i - 1]), 32) AS prev_hash,
    toFixedString(_hashes[i], 32) AS hash,
    _topic, _partition, _offset
FROM {db}.audit_events_in
ARRAY JOIN events AS e, arrayEnumerate(events) AS i
WHERE NOT has(_stored, i);
