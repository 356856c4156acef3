-- Audit log entries of each org.
CREATE TABLE IF NOT EXISTS {db}.audit_events
(
    org_id      LowCardinality(String),
    occurred_at DateTime64(3, 'UTC'),
    id          String,
    actor       String,
    action      LowCardinality(String),
    target      String,
    metadata    Map(String, String),
    ingested_at DateTime64(3, 'UTC') DEFAULT now64(3),
    _topic      LowCardinality(String),
    _partition  UInt32,
    _offset     UInt64,
    INDEX idx_offset _offset TYPE minmax GRANULARITY 1
)
ENGINE = ReplacingMergeTree
PARTITION BY toYYYYMM(occurred_at)
ORDER BY (org_id, occurred_at, id)
