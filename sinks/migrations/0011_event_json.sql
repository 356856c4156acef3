-- Event documents as the API's JSON: _doc (migration 0009) becomes the event's
-- JSON object itself, in the shape the read API returns, so an event page or a trace is
-- the documents joined into the response as they are, where each was parsed and encoded
-- again (~2-3 ms a page of 50 here). Fields in the TraceEvent schema's order, times as
-- ISO 8601 UTC with milliseconds, the canonical JSON fields (input, output, messages, ...)
-- embedded, 64-bit integers as numbers. tests/integration/test_event_docs.py holds every
-- document equal to the event read column by column.
--
-- MATERIALIZE COLUMN rewrites the documents of the events stored before this migration.

ALTER TABLE {db}.events MODIFY COLUMN _doc String MATERIALIZED concat(
        '{"event_id":', toJSONString(event_id),
        ',"org_id":', toJSONString(org_id),
        ',"trace_id":', toJSONString(trace_id),
        ',"parent_id":', ifNull(toJSONString(parent_id), 'null'),
        ',"class":', ifNull(toJSONString(class), 'null'),
        ',"type":', toJSONString(type),
        ',"name":', ifNull(toJSONString(name), 'null'),
        ',"occurred_at":', concat('"', replaceOne(toString(occurred_at), ' ', 'T'), 'Z"'),
        ',"end_time":', ifNull(concat('"', replaceOne(toString(end_time), ' ', 'T'), 'Z"'), 'null'),
        ',"status":', ifNull(toJSONString(status), 'null'),
        ',"model":', ifNull(toJSONString(model), 'null'),
        ',"model_config":', ifNull(model_config, 'null'),
        ',"user_id":', ifNull(toJSONString(user_id), 'null'),
        ',"session_id":', ifNull(toJSONString(session_id), 'null'),
        ',"agent_id":', ifNull(toJSONString(agent_id), 'null'),
        ',"agent_name":', ifNull(toJSONString(agent_name), 'null'),
        ',"actor_type":', ifNull(toJSONString(actor_type), 'null'),
        ',"actor_name":', ifNull(toJSONString(actor_name), 'null'),
        ',"prompt_name":', ifNull(toJSONString(prompt_name), 'null'),
        ',"description":', ifNull(toJSONString(description), 'null'),
        ',"outcome":', ifNull(toJSONString(outcome), 'null'),
        ',"input":', ifNull(input, 'null'),
        ',"output":', ifNull(output, 'null'),
        ',"messages":', ifNull(messages, 'null'),
        ',"tools":', ifNull(tools, 'null'),
        ',"tool_choice":', ifNull(tool_choice, 'null'),
        ',"input_tokens":', ifNull(toString(input_tokens), 'null'),
        ',"output_tokens":', ifNull(toString(output_tokens), 'null'),
        ',"total_tokens":', ifNull(toString(total_tokens), 'null'),
        ',"cost":', ifNull(toJSONString(cost), 'null'),
        ',"cost_currency":', ifNull(toJSONString(cost_currency), 'null'),
        ',"scores":', toJSONString(scores),
        ',"tags":', toJSONString(tags),
        ',"metadata":', toJSONString(metadata),
        ',"policy_version":', ifNull(toString(policy_version), 'null'),
        ',"approval_request_id":', ifNull(toJSONString(approval_request_id), 'null'),
        ',"authority_model":', ifNull(toJSONString(authority_model), 'null'),
        ',"requested_operation":', ifNull(toJSONString(requested_operation), 'null'),
        ',"target_integration":', ifNull(toJSONString(target_integration), 'null'),
        ',"resource_scope":', ifNull(toJSONString(resource_scope), 'null'),
        ',"data_classification":', ifNull(toJSONString(data_classification), 'null'),
        ',"policy_rule_id":', ifNull(toJSONString(policy_rule_id), 'null'),
        ',"parent_trace_id":', ifNull(toJSONString(parent_trace_id), 'null'),
        '}');

ALTER TABLE {db}.events MATERIALIZE COLUMN _doc SETTINGS mutations_sync = 2
