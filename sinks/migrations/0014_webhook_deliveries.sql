-- Webhook delivery attempts and dead letters, as the dispatcher writes them to webhook-attempts and
-- webhook-dead-letter: one row per record, inserted as it arrived with its source offset. A record
-- replayed by the sink is left out by its replay window. A repeat written by a restarted dispatcher
-- is a second row, and readers take one per key.

CREATE TABLE IF NOT EXISTS {db}.webhook_attempts
(
    org_id          LowCardinality(String),
    subscription_id String,
    delivery_id     String,
    event_id        String,
    type            LowCardinality(String),
    attempt         UInt32,
    at              DateTime64(3, 'UTC'),
    status_code     UInt16,
    error           String,
    latency_ms      UInt32,
    outcome         LowCardinality(String),
    _topic          LowCardinality(String),
    _partition      UInt32,
    _offset         UInt64,
    INDEX idx_offset _offset TYPE minmax GRANULARITY 1
)
ENGINE = MergeTree
ORDER BY (org_id, subscription_id, at, delivery_id);

CREATE TABLE IF NOT EXISTS {db}.webhook_dead_letters
(
    org_id          LowCardinality(String),
    subscription_id String,
    id              String,
    event_id        String,
    type            LowCardinality(String),
    payload         String,
    attempts        UInt32,
    due_at          DateTime64(3, 'UTC'),
    created_at      DateTime64(3, 'UTC'),
    last_error      String,
    _topic          LowCardinality(String),
    _partition      UInt32,
    _offset         UInt64,
    INDEX idx_offset _offset TYPE minmax GRANULARITY 1
)
ENGINE = ReplacingMergeTree
ORDER BY (org_id, subscription_id, id);
