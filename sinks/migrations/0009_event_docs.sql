-- Event documents (the read benchmark): every event also as one JSON array of its
-- fields, in the TraceEvent schema's order (migration 0011 makes it the API's JSON object instead).
-- A ClickHouse query here costs ~0.25-0.5 ms per column it reads whatever the rows, so an
-- event page that read all 43 columns cost ~30 ms, where reading _doc costs one column.
--
-- MATERIALIZED: computed from the columns on insert, so the sink and its views are unchanged.
-- Parts stored before this migration compute it when read.

ALTER TABLE {db}.events
    ADD COLUMN IF NOT EXISTS _doc String MATERIALIZED toJSONString(tuple(
        event_id, org_id, trace_id, parent_id, class, type,
        name, occurred_at, end_time, status, model, model_config,
        user_id, session_id, agent_id, agent_name, actor_type, actor_name,
        prompt_name, description, outcome, input, output, messages,
        tools, tool_choice, input_tokens, output_tokens, total_tokens, cost,
        cost_currency, scores, tags, metadata, policy_version, approval_request_id,
        authority_model, requested_operation, target_integration, resource_scope, data_classification, policy_rule_id,
        parent_trace_id));
