-- A trace's approval decision and policy version in the traces read model, so the bulk trace
-- export (seed 003's 17 columns) reads one merged row per trace instead of joining every chunk
-- with a scan of the org's events.
--
-- decision: (2^64 - 1 - seq, type, approver, decided at) of the trace's first event deciding an
-- approval (approval_granted, approval_denied or approval_expired), (0, '', '', 0) when none.
-- policy_version: (2^64 - 1 - seq, version) of its first event naming a policy version, (0, 0)
-- when none. max() keeps the first, as for the other first values.
--
-- Traces stored before this migration get one more partial row holding just these two values
-- (every other column at its default, which its merge function ignores: max of 0, sum of 0, no
-- tags, has_first 0), computed from their stored events. The worker is not running yet.

ALTER TABLE {db}.traces
    ADD COLUMN IF NOT EXISTS decision SimpleAggregateFunction(max, Tuple(UInt64, String, String, DateTime64(3, 'UTC'))),
    ADD COLUMN IF NOT EXISTS policy_version SimpleAggregateFunction(max, Tuple(UInt64, Int64));

INSERT INTO {db}.traces (org_id, started_at, trace_id, decision, policy_version)
SELECT t.org_id, t.started_at, t.trace_id, x.first_decision, x.first_policy_version
FROM (SELECT DISTINCT org_id, started_at, trace_id FROM {db}.traces) AS t
INNER JOIN (
    SELECT org_id, trace_id,
           maxIf((18446744073709551615 - seq, type, ifNull(actor_name, ''), occurred_at),
                 type IN ('approval_granted', 'approval_denied', 'approval_expired')) AS first_decision,
           maxIf((18446744073709551615 - seq, assumeNotNull(policy_version)), policy_version IS NOT NULL)
               AS first_policy_version
    FROM {db}.events
    WHERE seq > 0 AND (type IN ('approval_granted', 'approval_denied', 'approval_expired') OR policy_version IS NOT NULL)
    GROUP BY org_id, trace_id
) AS x ON t.org_id = x.org_id AND t.trace_id = x.trace_id;

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
    maxIf((18446744073709551615 - seq, e.type, ifNull(e.actor_name, ''), fromUnixTimestamp64Milli(e.occurred_at, 'UTC')),
          e.type IN ('approval_granted', 'approval_denied', 'approval_expired')) AS decision,
    maxIf((18446744073709551615 - seq, assumeNotNull(e.policy_version)), e.policy_version IS NOT NULL) AS policy_version,
    max(_partition) AS _partition,
    max(_offset) AS _offset
FROM {db}.events_in
ARRAY JOIN events AS e, arrayEnumerate(events) AS i
WHERE _first_seq > 0 AND _summarize
GROUP BY org_id, trace_id, _started_at;
