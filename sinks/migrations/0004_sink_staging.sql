-- Staging for the sink: one row per Kafka record, as the record's Avro batch plus its
-- source (topic, partition, offset). The sink sends these rows as an Avro container,
-- ClickHouse parses them in C++, and the materialized view unpacks each batch into event rows.
-- The Null tables store nothing. Tuple element names and order follow the .avsc files.

CREATE TABLE IF NOT EXISTS {db}.events_in
(
    org_id String,
    trace_id String,
    events Array(Tuple(
        event_id            String,
        org_id              String,
        trace_id            String,
        parent_id           Nullable(String),
        class               Nullable(String),
        type                String,
        name                Nullable(String),
        occurred_at         Int64,
        end_time            Nullable(Int64),
        status              Nullable(String),
        model               Nullable(String),
        model_config        Nullable(String),
        user_id             Nullable(String),
        session_id          Nullable(String),
        agent_id            Nullable(String),
        agent_name          Nullable(String),
        actor_type          Nullable(String),
        actor_name          Nullable(String),
        prompt_name         Nullable(String),
        description         Nullable(String),
        outcome             Nullable(String),
        input               Nullable(String),
        output              Nullable(String),
        messages            Nullable(String),
        tools               Nullable(String),
        tool_choice         Nullable(String),
        input_tokens        Nullable(Int64),
        output_tokens       Nullable(Int64),
        total_tokens        Nullable(Int64),
        cost                Nullable(Float64),
        cost_currency       Nullable(String),
        scores              Map(String, Float64),
        tags                Array(String),
        metadata            Map(String, String),
        policy_version      Nullable(Int64),
        approval_request_id Nullable(String),
        authority_model     Nullable(String),
        requested_operation Nullable(String),
        target_integration  Nullable(String),
        resource_scope      Nullable(String),
        data_classification Nullable(String),
        policy_rule_id      Nullable(String),
        parent_trace_id     Nullable(String)
    )),
    _topic     String,
    _partition UInt32,
    _offset    UInt64
)
ENGINE = Null;

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
    _topic, _partition, _offset
FROM {db}.events_in
ARRAY JOIN events AS e;

CREATE TABLE IF NOT EXISTS {db}.audit_events_in
(
    org_id String,
    events Array(Tuple(
        id          String,
        org_id      String,
        actor       String,
        action      String,
        target      String,
        metadata    Map(String, String),
        occurred_at Int64
    )),
    _topic     String,
    _partition UInt32,
    _offset    UInt64
)
ENGINE = Null;

CREATE MATERIALIZED VIEW IF NOT EXISTS {db}.audit_events_in_mv TO {db}.audit_events AS
SELECT
    e.id AS id,
    e.org_id AS org_id,
    e.actor AS actor,
    e.action AS action,
    e.target AS target,
    e.metadata AS metadata,
    fromUnixTimestamp64Milli(e.occurred_at, 'UTC') AS occurred_at,
    _topic, _partition, _offset
FROM {db}.audit_events_in
ARRAY JOIN events AS e;
