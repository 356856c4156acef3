-- How each link's hash was computed (schemas.integrity): 1 = sha256 of Python's sorted-keys JSON
-- (links sealed before 2026-12-05, the default for every stored row), 2 = sha256 of RFC 8785 JSON.
-- Unchained rows (seq 0) store 0. The sealed records carry it as hash_version, staged as
-- _hash_version. The views are those of 0007 plus that column.

ALTER TABLE {db}.events ADD COLUMN IF NOT EXISTS hash_version UInt8 DEFAULT 1;

ALTER TABLE {db}.audit_events ADD COLUMN IF NOT EXISTS hash_version UInt8 DEFAULT 1;

ALTER TABLE {db}.events_in ADD COLUMN IF NOT EXISTS _hash_version Int32 DEFAULT 1;

ALTER TABLE {db}.audit_events_in ADD COLUMN IF NOT EXISTS _hash_version Int32 DEFAULT 1;

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
    toUInt8(_hash_version) AS hash_version,
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
    toUInt8(_hash_version) AS hash_version,
    _topic, _partition, _offset
FROM {db}.audit_events_in
ARRAY JOIN events AS e, arrayEnumerate(events) AS i
WHERE NOT has(_stored, i);
