-- Counting traces without merging them (the read benchmark): has_first is 1 in the
-- partial row that holds the trace's first event (seq 1) and 0 in the others, and stays 1
-- once ClickHouse merges them. Summaries are stored exactly once, so the org's traces are
-- sum(has_first), a scan of one column, where counting distinct keys had to aggregate every
-- partial row (60-120 ms at 1M traces).
--
-- Rows stored before this migration are merged into one per trace first (OPTIMIZE FINAL,
-- before the worker starts), so each of them is its trace's only row.

ALTER TABLE {db}.traces
    ADD COLUMN IF NOT EXISTS has_first SimpleAggregateFunction(max, UInt8) AFTER event_count;

OPTIMIZE TABLE {db}.traces FINAL;

ALTER TABLE {db}.traces UPDATE has_first = 1 WHERE 1 SETTINGS mutations_sync = 2;

DROP VIEW IF EXISTS {db}.traces_in_mv;

CREATE MATERIALIZED VIEW IF NOT EXISTS {db}.traces_in_mv TO {db}.traces AS
WITH toUInt64(_first_seq + i - 1) AS seq
SELECT
    org_id,
    fromUnixTimestamp64Milli(_started_at, 'UTC') AS started_at,
    trace_id,
    max(seq) AS event_count,
    max(seq = 1) AS has_first,
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
