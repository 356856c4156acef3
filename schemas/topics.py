"""Kafka topic names: one place, used by producers, agents and the broker hygiene."""

TRACE_EVENTS = "trace-events"
AUDIT_EVENTS = "audit-events"
SEALED_EVENTS = "sealed-events"
INVALID_EVENTS = "invalid-events"
#: The chain agent's verdicts on trace commands (keyed by request id), read by the API.
COMMAND_VERDICTS = "command-verdicts"
#: What webhook subscribers may be told (``trace.completed``…), keyed by org_id.
WEBHOOK_EVENTS = "webhook-events"
#: Webhook deliveries on their first attempt (``WebhookDelivery`` Avro), keyed by subscription id.
WEBHOOK_DELIVERIES = "webhook-deliveries"
#: Deliveries whose every retry failed; replayed from ClickHouse's copy (``POST /v1/webhooks/{id}/replay``).
WEBHOOK_DEAD_LETTER = "webhook-dead-letter"
#: Every delivery attempt (``WebhookAttempt`` Avro), keyed by subscription id.
WEBHOOK_ATTEMPTS = "webhook-attempts"


def webhook_retry_topic(tier: int) -> str:
    """The topic of deliveries waiting for their ``tier``-th retry (1-based)."""
    return f"webhook-retry-{tier}"


#: Hourly rollups (``HourlyRollup`` Avro), keyed by org_id: public, re-sent when an hour changes.
ROLLUPS_HOURLY = "rollups-hourly"
#: Webhook subscriptions (``WebhookSubscription`` Avro), keyed by subscription id: every change is the
#: subscription's whole new state (``version`` one higher), deletion included (status ``deleted``).
#: Compacted, and never trimmed: the topic is the subscriptions' store, secrets included.
WEBHOOK_SUBSCRIPTIONS = "webhook-subscriptions"
#: Signed checkpoints (JSON), as also stored in ClickHouse.
CHECKPOINTS = "checkpoints"
#: Requests for a checkpoint now (JSON ``{"org_id", "trace_id", "seq"}``, keyed by org): an export of a
#: trace no checkpoint covers yet asks, and the checkpointer ends its period early (rate-limited).
CHECKPOINT_REQUESTS = "checkpoint-requests"

#: Header of the empty records that pad a ``sealed-events`` partition past offsets the broker lost
#: (``streams.chain.SealedTail``); readers skip them.
PADDING_HEADER = "tracehouse-padding"
PADDING = [(PADDING_HEADER, b"")]


def is_padding(headers: object) -> bool:
    """Whether a record with these (Kafka) headers is padding."""
    return any(name == PADDING_HEADER for name, _ in headers or ())


#: Topics tracehouse creates before its worker starts (partition count from Settings).
SOURCE_TOPICS = (TRACE_EVENTS, AUDIT_EVENTS, SEALED_EVENTS, INVALID_EVENTS, COMMAND_VERDICTS, WEBHOOK_EVENTS,
                 CHECKPOINTS, CHECKPOINT_REQUESTS, ROLLUPS_HOURLY, WEBHOOK_SUBSCRIPTIONS)

#: Topics that hold state rather than transit: created with these configs (on Kafka: compacted,
#: so each key's latest record stays forever), never trimmed by the embedded trimmer.
TOPIC_CONFIGS = {WEBHOOK_SUBSCRIPTIONS: {"cleanup.policy": "compact"}}
