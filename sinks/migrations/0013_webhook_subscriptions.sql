-- Webhook subscriptions as the API lists them: one row per change (the sink stores every
-- webhook-subscriptions record), the highest version of an (org_id, id) being its state;
-- readers use FINAL. The records' secrets are never stored here: the sink inserts the record's
-- Avro as it arrived, and ClickHouse skips the Avro fields this table has no column for.
-- A replayed record (same id, same version) collapses like any older version.

CREATE TABLE IF NOT EXISTS {db}.webhook_subscriptions
(
    org_id          LowCardinality(String),
    id              String,
    url             String,
    event_types     Array(String),
    description     String,
    filter          Map(String, String),
    status          LowCardinality(String),
    disabled_reason String,
    created_at      DateTime64(3, 'UTC'),
    updated_at      DateTime64(3, 'UTC'),
    version         UInt64,
    _topic          LowCardinality(String),
    _partition      UInt32,
    _offset         UInt64,
    INDEX idx_offset _offset TYPE minmax GRANULARITY 1
)
ENGINE = ReplacingMergeTree(version)
ORDER BY (org_id, id)
