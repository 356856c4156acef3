"""One frozen Settings object, built once per process from ``TRACEHOUSE_*`` env vars.

Every setting has one field, one env var (``TRACEHOUSE_`` + the upper-cased field
name) and one default. Nothing else in tracehouse reads the environment. Values are
parsed strictly by the field's type: a typo stops start-up with a ValueError naming the
variable instead of silently meaning the default or ``false``.
"""

from __future__ import annotations

import dataclasses
import math
import os
import types
import typing
from collections.abc import Mapping
from dataclasses import dataclass
from functools import cache
from pathlib import Path
from typing import Any, Literal

ENV_PREFIX = "TRACEHOUSE_"
#: What a sealed record of one event adds to the event's bytes, at most: the batch header
#: (org and trace ids of up to 256 characters), the seal (first_seq, prev_hash, 32 bytes per
#: event for up to 500 events, started_at, the outcome) and Kafka's record framing.
RECORD_OVERHEAD_BYTES = 64 * 1024
#: Bounds of ``max_event_bytes``: at least the producers' 1 MiB batches (a topic's
#: max.message.bytes must hold a whole batch), at most well under the 100 MiB request
#: the embedded broker (like Kafka's socket.request.max.bytes) accepts.
MIN_EVENT_BYTES = 1024 * 1024
MAX_EVENT_BYTES = 64 * 1024 * 1024

ProcessingGuarantee = Literal["at_least_once", "exactly_once"]
LogLevel = Literal["DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL"]
#: Accepted spellings of a boolean setting (case-insensitive, surrounding whitespace ignored).
TRUE_WORDS = ("true", "1", "yes", "on")
FALSE_WORDS = ("false", "0", "no", "off")


@dataclass(frozen=True)
class Settings:
    """Process-wide configuration; see the README's settings table."""

    http_host: str = "127.0.0.1"
    http_port: int = 8080
    data_dir: Path = Path("./.tracehouse")
    #: External Kafka bootstrap servers; unset means the embedded broker.
    kafka_bootstrap: str | None = None
    #: Port of the embedded broker (only used when kafka_bootstrap is unset).
    kafka_port: int = 9092
    #: ClickHouse server DSN (http://user:pass@host:8123/db); unset means embedded chdb.
    clickhouse_url: str | None = None
    clickhouse_database: str = "tracehouse"
    #: Queries ClickHouse runs at once for this process (one client per thread, embedded
    #: chdb or server): a slow read or a sink insert does not hold up the others.
    clickhouse_threads: int = 4
    #: Operator key allowed to create org keys through POST /v1/admin/keys.
    admin_key: str | None = None
    topic_partitions: int = 4
    #: Replication factor of the topics tracehouse creates (and of Faust's changelogs).
    topic_replication_factor: int = 1
    #: Faust processing guarantee: exactly_once (chains never fork or gap on a crash) or
    #: at_least_once (cheaper; a crash may store a sealed batch twice).
    processing_guarantee: ProcessingGuarantee = "at_least_once"
    #: Chain events into hash chains (sealed-events). ``false`` is the bench's unchained
    #: baseline: events are stored without links (verify reports them invalid) and outcomes
    #: cannot be recorded (503).
    chain_events: bool = True
    #: An approval request still undecided this long after it was made expires its trace
    #: (final_outcome ``expired``); the worker checks every approval_check_seconds.
    approval_ttl_seconds: float = 86_400.0
    approval_check_seconds: float = 30.0
    #: How long POST /api/v1/traces/{id}/outcome waits for the chain agent's verdict (504 after).
    command_timeout_seconds: float = 10.0
    #: How often the worker signs a checkpoint over the chain heads that changed, and the
    #: ed25519 key it signs with (base64 of the 32-byte private key; unset: a key generated
    #: into <data_dir>/checkpoint_key.pem on first run).
    checkpoint_interval_seconds: float = 3_600.0
    checkpoint_key: str | None = None
    #: An export of a trace no checkpoint covers asks for a checkpoint now; the checkpointer signs
    #: at most one such early checkpoint per this many seconds.
    checkpoint_on_demand_seconds: float = 5.0
    #: How often the worker publishes the hours whose rollups changed to ``rollups-hourly``.
    rollup_interval_seconds: float = 5.0
    #: The sink inserts into ClickHouse at this many Kafka records (each a batch of up to 500
    #: events), and at most once per this many seconds otherwise (a record after a quiet spell goes at once).
    sink_batch_records: int = 2_000
    sink_batch_seconds: float = 1.0
    #: Largest accepted HTTP request body and number of events per request.
    max_body_bytes: int = 10 * 1024 * 1024
    max_batch_events: int = 5_000
    #: Largest event (its Avro encoding, about its JSON size): a bigger one is rejected at the
    #: edge by index. Every producer, consumer and topic is sized for it (``max_record_bytes``).
    max_event_bytes: int = 4 * 1024 * 1024
    #: How long a produce (ingest, outcome command) waits for the broker's ack before it
    #: answers 503 with Retry-After: the event may or may not be stored.
    send_timeout_seconds: float = 3.0
    #: How often ``run`` checks that the embedded broker's process is alive (restarted if not).
    broker_supervise_seconds: float = 1.0
    #: Processes that parse, validate and encode ingest requests off the event loop (0: inline).
    ingest_processes: int = 2
    #: How long a verified API key stays cached (revocation latency).
    key_cache_seconds: float = 30.0
    #: How often the embedded broker's consumed records are deleted (DeleteRecords), and
    #: its chain-table changelogs compacted once they hold more than twice as many records
    #: as their tables have keys, plus compact_min_records (the embedded broker does not compact).
    trim_interval_seconds: float = 30.0
    compact_min_records: int = 10_000
    log_level: LogLevel = "INFO"
    #: Faust consumer commit interval, seconds.
    commit_interval_seconds: float = 1.0
    #: Delays before each webhook retry tier (``ms``, ``s``, ``m``, ``h``; 1 to 10 tiers, each at most
    #: 24 h); a delivery failing after the last goes to the dead letters.
    webhook_retry_schedule: str = "1m,5m,30m"
    #: Let webhooks reach private, loopback and link-local addresses (cloud metadata never).
    webhook_allow_private_networks: bool = False
    #: One webhook delivery attempt's time limit (connect to the end of the response).
    webhook_timeout_seconds: float = 10.0
    #: Deliveries in flight to one endpoint at once.
    webhook_concurrency_per_endpoint: int = 4
    #: An endpoint's circuit breaker opens after this many consecutive failed attempts, for this
    #: long; then one attempt probes it.
    webhook_breaker_failures: int = 5
    webhook_breaker_cooldown_seconds: float = 30.0
    #: Most rows one bulk export answers (seed 003: 413 ``export_too_large`` above it).
    export_max_rows: int = 100_000
    #: Where the worker writes each org's daily dumps (a directory, or s3://, gs://, az:// through
    #: fsspec); unset: no daily dumps.
    dump_url: str | None = None
    #: The worker dumps yesterday once this UTC hour of today has begun (0-23).
    dump_hour_utc: int = 1

    @property
    def embedded_kafka(self) -> bool:
        """True when tracehouse runs its own embedded broker."""
        return not self.kafka_bootstrap

    @property
    def embedded_clickhouse(self) -> bool:
        """True when ClickHouse is chdb inside this process."""
        return not self.clickhouse_url

    @property
    def bootstrap_servers(self) -> str:
        """host:port list of the Kafka brokers to talk to."""
        return self.kafka_bootstrap or f"127.0.0.1:{self.kafka_port}"

    @property
    def max_record_bytes(self) -> int:
        """Largest Kafka record tracehouse writes: one event of ``max_event_bytes`` alone in a
        batch, sealed (``RECORD_OVERHEAD_BYTES`` covers the batch header, the
        seal and Kafka's framing). Producers, fetches and topics are sized from it."""
        return self.max_event_bytes + RECORD_OVERHEAD_BYTES

    @property
    def broker_dir(self) -> Path:
        return self.data_dir / "broker"

    @property
    def chdb_dir(self) -> Path:
        return self.data_dir / "clickhouse"

    @property
    def checkpoint_key_path(self) -> Path:
        return self.data_dir / "checkpoint_key.pem"

    @property
    def faust_dir(self) -> Path:
        return self.data_dir / "faust"

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None, **overrides: Any) -> Settings:
        """Build Settings from ``TRACEHOUSE_*`` variables; ``overrides`` win over both."""
        environ = os.environ if environ is None else environ
        values: dict[str, Any] = {}
        for f in dataclasses.fields(cls):
            raw = environ.get(ENV_PREFIX + f.name.upper())
            if raw is not None and raw != "":
                values[f.name] = _parse(f, raw)
        values.update(overrides)
        settings = cls(**values)
        settings.validate()
        return settings

    def validate(self) -> None:
        """Raise ValueError naming the env var of the first invalid setting."""
        for name, hint in _field_types().items():
            value = getattr(self, name)
            if typing.get_origin(hint) is Literal and value not in typing.get_args(hint):
                raise ValueError(f"{_env_name(name)}={value!r}: expected {'/'.join(typing.get_args(hint))}")
            if hint is float and not math.isfinite(value):
                raise ValueError(f"{_env_name(name)}={value!r}: expected a finite number")
        if self.processing_guarantee == "exactly_once" and self.embedded_kafka:
            raise ValueError(
                f"{ENV_PREFIX}PROCESSING_GUARANTEE=exactly_once needs a real Kafka ({ENV_PREFIX}KAFKA_BOOTSTRAP): "
                "after an aborted transaction the embedded broker hides later committed records from "
                "read_committed consumers (README, \"exactly_once needs a real Kafka\")")
        for name in ("http_port", "kafka_port", "topic_partitions", "sink_batch_records",
                     "max_body_bytes", "max_batch_events", "max_event_bytes", "send_timeout_seconds",
                     "broker_supervise_seconds", "approval_ttl_seconds", "approval_check_seconds",
                     "command_timeout_seconds", "checkpoint_interval_seconds", "rollup_interval_seconds",
                     "checkpoint_on_demand_seconds",
                     "compact_min_records", "webhook_timeout_seconds", "webhook_concurrency_per_endpoint",
                     "webhook_breaker_failures", "webhook_breaker_cooldown_seconds", "export_max_rows"):
            if getattr(self, name) <= 0:
                raise ValueError(f"{_env_name(name)} must be positive")
        if not MIN_EVENT_BYTES <= self.max_event_bytes <= MAX_EVENT_BYTES:
            raise ValueError(f"{ENV_PREFIX}MAX_EVENT_BYTES must be between {MIN_EVENT_BYTES} and {MAX_EVENT_BYTES}")
        if not 0 <= self.dump_hour_utc <= 23:
            raise ValueError(f"{ENV_PREFIX}DUMP_HOUR_UTC must be between 0 and 23")
        if self.ingest_processes < 0:
            raise ValueError(f"{ENV_PREFIX}INGEST_PROCESSES must be 0 or more")
        from schemas.webhooks import parse_retry_schedule  # here: importing settings loads none of ours

        try:
            parse_retry_schedule(self.webhook_retry_schedule)
        except ValueError as exc:
            raise ValueError(f"{ENV_PREFIX}WEBHOOK_RETRY_SCHEDULE={self.webhook_retry_schedule!r}: {exc}") from None

    @property
    def webhook_retry_delays(self) -> tuple[float, ...]:
        """Seconds before each webhook retry tier (``webhook_retry_schedule`` parsed)."""
        from schemas.webhooks import parse_retry_schedule  # here: importing settings loads none of ours

        return parse_retry_schedule(self.webhook_retry_schedule)


def _env_name(field_name: str) -> str:
    return ENV_PREFIX + field_name.upper()


@cache
def _field_types() -> dict[str, Any]:
    """Each field's resolved type, ``X | None`` reduced to ``X``."""
    hints = typing.get_type_hints(Settings)
    resolved: dict[str, Any] = {}
    for f in dataclasses.fields(Settings):
        hint = hints[f.name]
        if typing.get_origin(hint) in (typing.Union, types.UnionType):
            (hint,) = [a for a in typing.get_args(hint) if a is not type(None)]
        resolved[f.name] = hint
    return resolved


def _parse(f: dataclasses.Field, raw: str) -> Any:
    """One env var's value as its field's type; ValueError naming the variable otherwise."""
    kind = _field_types()[f.name]
    word = raw.strip()
    if kind is bool:
        if word.lower() in TRUE_WORDS:
            return True
        if word.lower() in FALSE_WORDS:
            return False
        raise ValueError(f"{_env_name(f.name)}={raw!r}: expected true/false/1/0/yes/no/on/off")
    if typing.get_origin(kind) is Literal:
        allowed: tuple[str, ...] = typing.get_args(kind)
        for value in allowed:  # case-insensitive, stored as spelled in the type
            if word.lower() == value.lower():
                return value
        raise ValueError(f"{_env_name(f.name)}={raw!r}: expected {'/'.join(allowed)}")
    try:
        if kind is int:
            return int(raw)
        if kind is float:
            number = float(raw)
            if not math.isfinite(number):
                raise ValueError("expected a finite number")
            return number
    except ValueError as exc:
        raise ValueError(f"{_env_name(f.name)}={raw!r}: {exc}") from None
    if kind is Path:
        return Path(raw)
    return raw


__all__ = ["Settings", "ENV_PREFIX"]
