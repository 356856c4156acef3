"""Sealing: turn a raw batch record into a sealed one, advancing its chain's head.

Pure logic over two byte mappings (Faust tables in the worker, dicts in unit tests):

- ``heads``: chain key -> ``Head`` (seq, last hash, digests of the ids linked since the
  last archived bucket). One write per record sealed.
- ``archive``: chain key + bucket number -> the id digests of ``BUCKET`` consecutive
  links, written once when a bucket fills. Long chains thus never rewrite their
  whole id list, and a producer retry of any id ever linked is still recognised.
- ``states``: trace chain key -> its lifecycle (``schemas.lifecycle.TraceState``), only
  for traces with governance events, written only when an event changes it.
- ``pending``: trace chain key -> its approval requests still open, and their deadlines:
  what the expiry timer scans (the keys come and go).

A sealed record is the raw batch body, untouched, followed by the links
(``first_seq``, ``prev_hash``, ``hashes``): see ``schemas/tracehouse.Sealed*.avsc``.
Only when some events are retries of ids already linked is the batch re-encoded
without them.
"""

from __future__ import annotations

import hashlib
import json
import struct
from collections import OrderedDict
from collections.abc import Callable, Mapping, MutableMapping
from dataclasses import dataclass, field
from functools import cache
from typing import Any

from schemas.avro_jcs import JcsReader
from schemas.codec import HEADER_LEN, MAGIC, DecodeError, decode, encode, sealed_record, trace_summary
from schemas.compiled import Codec, CorruptRecord, read_long
from schemas.integrity import GENESIS, JCS_HASH, LEGACY_HASH, avro_link, avro_link_reader
from schemas.lifecycle import LIFECYCLE_TYPES, TraceState, decide, fold, touches_lifecycle
from schemas.registry import record_fields, schema

#: Id digests per archived bucket (8 bytes each): bounds the size of one head write.
BUCKET = 64
GENESIS_BYTES = bytes.fromhex(GENESIS)
_SEQ = struct.Struct(">Q")
#: First byte of a packed Head that holds started_at (the first layout starts with seq's 0 byte);
#: _LAYOUT_2_NAMED: the same, for a chain whose events already named an agent.
_LAYOUT_2 = b"\x01"
_LAYOUT_2_NAMED = b"\x02"
Bytes = MutableMapping[bytes, bytes]


@dataclass(frozen=True)
class ChainKind:
    """One kind of chain: which raw records it reads and which sealed record it writes."""

    name: str
    batch_schema: str
    single_schema: str
    sealed_schema: str
    id_field: str
    batch_keys: tuple[str, ...]  # the batch fields besides events; the last is the Kafka key
    lifecycle: bool = False  # its events carry a lifecycle (schemas.lifecycle)
    kind_field: str = "type"  # the event field that says what an event is
    agent_field: str | None = None  # the event field naming the chain's agent (its first non-null value)

    def chain_key(self, batch: dict) -> bytes:
        """The state key of the batch's chain: kind, then the batch keys (org first),
        NUL-separated; only the last (the Kafka key) may itself hold a NUL."""
        parts = [batch[k] for k in self.batch_keys]
        if any("\x00" in part for part in parts[:-1]):
            raise DecodeError(f"{self.batch_keys[0]} must not contain NUL characters")
        return "\x00".join((self.name, *parts)).encode()

    def kafka_key(self, batch: dict) -> bytes:
        return batch[self.batch_keys[-1]].encode()

    @property
    def event_fields(self) -> tuple[str, ...]:
        """The fields of its events (``single_schema``): what a link hashes besides seq and prev_hash."""
        return _field_names(self.single_schema)


@cache
def _field_names(schema_name: str) -> tuple[str, ...]:
    return tuple(f["name"] for f in record_fields(schema_name))


TRACE_CHAIN = ChainKind("trace", "TraceEventBatch", "TraceEvent", "SealedTraceEventBatch", "event_id",
                        ("org_id", "trace_id"), lifecycle=True, agent_field="agent_id")
AUDIT_CHAIN = ChainKind("audit", "AuditEventBatch", "AuditEvent", "SealedAuditEventBatch", "id",
                        ("org_id",), kind_field="action")
_BY_SEALED_SCHEMA = {k.sealed_schema: k for k in (TRACE_CHAIN, AUDIT_CHAIN)}
_BY_NAME = {k.name.encode(): k for k in (TRACE_CHAIN, AUDIT_CHAIN)}
#: Heads-table key prefix of "the sealed-events offset the heads of partition p reflect".
_SEALED_OFFSET = b"\x00sealed-offset\x00"


@dataclass
class Head:
    """Where a chain stands: last seq and hash, when its first link occurred (epoch ms), whether
    one of its events named an agent, and the id digests of the unarchived tail.

    A head saved before ``agent_named`` existed reads as not named: the next record of its trace
    naming an agent is then marked ``agent_named`` too (its agent row in the trace key index
    repeats the trace's, unless the trace's events name different agents)."""

    seq: int = 0
    hash: bytes = GENESIS_BYTES
    recent: bytearray = field(default_factory=bytearray)
    started_at: int = 0
    agent_named: bool = False

    def pack(self) -> bytes:
        return ((_LAYOUT_2_NAMED if self.agent_named else _LAYOUT_2) + _SEQ.pack(self.seq) + self.hash
                + _SEQ.pack(self.started_at) + bytes(self.recent))

    def link_only(self) -> Head:
        """This head without the id digests (what a checkpoint needs of it)."""
        return Head(self.seq, self.hash, bytearray(), self.started_at, self.agent_named)

    @classmethod
    def unpack(cls, value: bytes) -> Head:
        if value[:1] in (_LAYOUT_2, _LAYOUT_2_NAMED):
            seq, started_at = _SEQ.unpack_from(value, 1)[0], _SEQ.unpack_from(value, 41)[0]
            return cls(seq, value[9:41], bytearray(value[49:]), started_at, value[:1] == _LAYOUT_2_NAMED)
        # the first layout (before started_at): seq, hash, digests; its seq's first byte is 0
        return cls(_SEQ.unpack_from(value)[0], value[8:40], bytearray(value[40:]))


def id_digest(event_id: str) -> bytes:
    """8 bytes standing for an id in the retry check (collision odds ~n^2/2^65 per chain)."""
    return hashlib.blake2b(event_id.encode(), digest_size=8).digest()


def _digests(blob: bytes | bytearray) -> set[bytes]:
    return {bytes(blob[i:i + 8]) for i in range(0, len(blob), 8)}


class ChainStore:
    """Heads and archived id digests of every chain, over two byte mappings."""

    def __init__(self, heads: Bytes, archive: Bytes, states: Bytes | None = None, pending: Bytes | None = None,
                 *, approval_ttl_ms: int = 86_400_000, cache_chains: int = 1_000) -> None:
        self.heads = heads
        self.archive = archive
        self.states = {} if states is None else states
        self.pending = {} if pending is None else pending
        self.approval_ttl_ms = approval_ttl_ms
        self._archived: OrderedDict[bytes, set[bytes]] = OrderedDict()  # LRU of archived id sets
        self._cache_chains = cache_chains

    def head(self, chain: bytes) -> Head:
        value = self.heads.get(chain)
        return Head.unpack(value) if value is not None else Head()

    def archived_ids(self, chain: bytes, head: Head) -> set[bytes]:
        """Digests of the ids in the chain's archived buckets (cached per chain)."""
        ids = self._archived.get(chain)
        if ids is None:
            ids = set()
            for bucket in range((head.seq - len(head.recent) // 8) // BUCKET):
                ids |= _digests(self.archive[_bucket_key(chain, bucket)])
            self._archived[chain] = ids
            if len(self._archived) > self._cache_chains:
                self._archived.popitem(last=False)
        else:
            self._archived.move_to_end(chain)
        return ids

    def state(self, chain: bytes) -> TraceState:
        value = self.states.get(chain)
        return TraceState.unpack(value) if value is not None else TraceState()

    def save(self, chain: bytes, head: Head, state: TraceState | None = None) -> None:
        """Store ``head`` (and ``state`` when given), first moving every full bucket of the
        head's tail into the archive."""
        if state is not None:
            self.states[chain] = state.pack()
            if state.pending:
                self.pending[chain] = json.dumps(state.pending).encode()
            elif chain in self.pending:
                del self.pending[chain]
        archived_links = head.seq - len(head.recent) // 8
        while len(head.recent) >= BUCKET * 8:
            bucket, head.recent = head.recent[:BUCKET * 8], head.recent[BUCKET * 8:]
            self.archive[_bucket_key(chain, archived_links // BUCKET)] = bytes(bucket)
            cached = self._archived.get(chain)
            if cached is not None:
                cached |= _digests(bucket)
            archived_links += BUCKET
        self.heads[chain] = head.pack()

    def sealed_offset(self, partition: int) -> int | None:
        """The last ``sealed-events[partition]`` offset whose head is saved, if recorded."""
        value = self.heads.get(_SEALED_OFFSET + str(partition).encode())
        return _SEQ.unpack(value)[0] if value is not None else None

    def set_sealed_offset(self, partition: int, offset: int) -> None:
        self.heads[_SEALED_OFFSET + str(partition).encode()] = _SEQ.pack(offset)

    def forget_cache(self) -> None:
        """Drop cached id sets (after a rebalance the tables may hold other values)."""
        self._archived.clear()


def _bucket_key(chain: bytes, bucket: int) -> bytes:
    return chain + b"\x00#" + str(bucket).encode()


def is_chain_key(key: bytes) -> bool:
    """Whether a heads-table key is a chain's (not bookkeeping, such as a sealed offset)."""
    return key.split(b"\x00", 1)[0] in _BY_NAME


def kafka_key_of(key: bytes, table: str) -> bytes | int:
    """What places a key of chain table ``table`` on a partition: the Kafka key of the
    chain it belongs to, or, for a sealed offset, the partition number itself."""
    if table == "heads" and key.startswith(_SEALED_OFFSET):
        return int(key[len(_SEALED_OFFSET):])
    chain = key.rsplit(b"\x00#", 1)[0] if table == "archive" else key
    kind = _BY_NAME[chain.split(b"\x00", 1)[0]]
    return chain.split(b"\x00", len(kind.batch_keys))[-1]


@dataclass(frozen=True)
class Sealed:
    """The outcome of sealing one raw record."""

    key: bytes  # Kafka key of the sealed record (trace_id, or org_id for audit)
    value: bytes | None  # the sealed record; None when every event was already linked
    linked: int
    retried: int
    misrouted: bool = False  # the key belongs to another partition: nothing was linked
    advance: Advance | None = None  # what to save once the record is durable


@dataclass(frozen=True)
class Advance:
    """A chain's new head (and lifecycle state, when its events changed it)."""

    chain: bytes
    head: Head
    state: TraceState | None = None
    closed: bool = False  # the trace closed with these events: tell webhook subscribers
    requested: tuple[dict, ...] = ()  # approval_requested events among them: tell approvers
    names_agent: bool = False  # they hold the chain's first event naming an agent

    def save(self, store: ChainStore) -> None:
        store.save(self.chain, self.head, self.state)


def _advance(kind: ChainKind, store: ChainStore, chain: bytes, head: Head, events: list[dict],
             names_agent: bool) -> Advance:
    if not kind.lifecycle or not touches_lifecycle(events):
        return Advance(chain, head, names_agent=names_agent)
    state = store.state(chain)
    closed = fold(state, events, store.approval_ttl_ms)
    return Advance(chain, head, state, closed, tuple(e for e in events if e["type"] == "approval_requested"),
                   names_agent)


def seal(kind: ChainKind, value: bytes, store: ChainStore,
         owns: Callable[[bytes], bool] | None = None) -> Sealed:
    """Link the events of raw record ``value`` onto their chain and build the sealed record.

    ``owns(key)`` says whether this record's Kafka key belongs on the partition it came
    from; if not, nothing is linked (a chain's state must live on one partition) and the
    result is ``misrouted``. Raises DecodeError for a record that is not a ``kind``
    record. Nothing is stored: the caller saves ``head`` (``ChainStore.save``) once the
    sealed record is durable, or in the same transaction.

    The events are never decoded into dicts unless some are retries (the batch is written
    again without them) or change a trace's lifecycle: ``_read_batch`` reads the batch's Avro
    binary once, writing each event's link document as it goes.
    """
    body = _batch_body(kind, value)
    keys, events = _read_batch(kind, body)
    if owns is not None and not owns(kind.kafka_key(keys)):
        return Sealed(kind.kafka_key(keys), None, 0, 0, misrouted=True)
    batch_keys = tuple(keys.values())
    chain = kind.chain_key(keys)
    head = store.head(chain)
    first_seq, prev, named_before = head.seq + 1, head.hash, head.agent_named
    recent = _digests(head.recent)
    archived = store.archived_ids(chain, head) if head.seq > len(head.recent) // 8 else set()
    reader = _event_reader(kind)
    kept, hashes, types = [], [], []
    agent_at = 3 + len(batch_keys)  # where _event_reader puts the agent field
    for index, (fields, parts) in enumerate(events):
        event_id = fields[0]
        if fields[3:agent_at] != batch_keys:
            name, got, want = next(x for x in zip(kind.batch_keys, fields[3:agent_at], batch_keys, strict=True)
                                   if x[1] != x[2])
            raise DecodeError(f"event {event_id!r} has {name} {got!r}, its batch {want!r}")
        digest = id_digest(event_id)
        if digest in recent or digest in archived:
            continue
        recent.add(digest)
        if head.seq == 0:
            head.started_at = fields[1]
        if not head.agent_named and kind.agent_field and fields[agent_at] is not None:
            head.agent_named = True
        head.seq += 1
        head.hash = avro_link(reader, parts, head.seq, head.hash.hex())
        head.recent += digest
        kept.append(index)
        hashes.append(head.hash)
        types.append(fields[2])
    retried = len(events) - len(kept)
    if not kept:
        return Sealed(kind.kafka_key(keys), None, 0, retried)
    if retried:
        body = _codec(kind).encode(keys | {"events": _events(kind, body, kept)})
    names_agent = head.agent_named and not named_before
    if kind.lifecycle and not LIFECYCLE_TYPES.isdisjoint(types):
        advance = _advance(kind, store, chain, head, _events(kind, body, kept if not retried else None), names_agent)
    else:
        advance = Advance(chain, head, names_agent=names_agent)
    sealed = _sealed_value(kind, body, first_seq, prev, hashes, advance, JCS_HASH)
    return Sealed(kind.kafka_key(keys), sealed, len(kept), retried, advance=advance)


def _codec(kind: ChainKind) -> Codec:
    return schema(kind.batch_schema).codec


def _batch_body(kind: ChainKind, value: bytes) -> bytes:
    """The Avro body of ``value`` as a batch of ``kind`` in its schema's current version: the record's
    own bytes when it is one, else (a single event, an earlier version) its decoded datum encoded again."""
    if value[:2] == MAGIC and value[2:HEADER_LEN] == schema(kind.batch_schema).fingerprint:
        return value[HEADER_LEN:]
    decoded = decode(value)
    if decoded.schema == kind.batch_schema:
        batch = decoded.datum
    elif decoded.schema == kind.single_schema:
        event = decoded.datum
        batch = {k: event[k] for k in kind.batch_keys} | {"events": [event]}
    else:
        raise DecodeError(f"{decoded.schema} records do not belong to the {kind.name} chains")
    return _codec(kind).encode(batch)


def _event_reader(kind: ChainKind) -> JcsReader:
    """What ``_read_batch`` reads each event with: its id, occurred_at, kind field, batch keys and
    agent field (if its kind has one), and its link document's parts (``schemas.integrity.avro_link``)."""
    agent = (kind.agent_field,) if kind.agent_field else ()
    return avro_link_reader(kind.single_schema, (kind.id_field, "occurred_at", kind.kind_field, *kind.batch_keys,
                                                 *agent))


def _read_batch(kind: ChainKind, body: bytes) -> tuple[dict[str, str], list[tuple[tuple, list[str | None]]]]:
    """The batch keys of a batch body (its leading string fields) and, for each event, what
    ``_event_reader`` reads of it. Raises DecodeError for a corrupt body, and for an event holding
    a number JSON cannot (RFC 8785 refuses NaN, infinities and integers beyond 2**53)."""
    read = _event_reader(kind).read
    try:
        keys = {}
        pos = 0
        for name in kind.batch_keys:
            n, pos = read_long(body, pos)
            if n < 0:
                raise CorruptRecord("negative length")
            keys[name], pos = body[pos:pos + n].decode(), pos + n
        events = []
        count, pos = read_long(body, pos)
        while count:
            if count < 0:  # a block with its size in bytes
                count = -count
                _, pos = read_long(body, pos)
            for _ in range(count):
                pos, fields, parts = read(body, pos)
                events.append((fields, parts))
            count, pos = read_long(body, pos)
    except (CorruptRecord, IndexError, UnicodeDecodeError, struct.error) as exc:
        raise DecodeError(f"corrupt {kind.batch_schema} body: {exc}") from None
    except ValueError as exc:  # a number JSON cannot hold (NaN, an integer beyond 2**53): no link document
        raise DecodeError(f"an event of this {kind.batch_schema} cannot be linked: {exc}") from None
    if pos != len(body):
        raise DecodeError(f"corrupt {kind.batch_schema} body: {len(body) - pos} bytes left after the record")
    return keys, events


def _events(kind: ChainKind, body: bytes, indexes: list[int] | None) -> list[dict]:
    """The events of a batch body as dicts (those at ``indexes``; None: all)."""
    events = _codec(kind).decode(body)["events"]
    return events if indexes is None else [events[i] for i in indexes]


@dataclass(frozen=True)
class Applied:
    """A command applied to its chain: the events it chained (None: none) and the encoded
    ``CommandVerdict`` to answer with (None: nobody waits for one)."""

    sealed: Sealed | None
    verdict: bytes | None


def apply_command(kind: ChainKind, command: Mapping[str, Any], store: ChainStore) -> Applied:
    """Decide ``command`` against its chain in ``store`` (``schemas.lifecycle.decide``) and seal the
    events it adds; nothing is saved (the caller saves ``sealed.advance`` as for ``seal``)."""
    chain = kind.chain_key(command)
    decision = decide(command, store.head(chain).seq, store.state(chain))
    sealed = None
    if decision.events:
        batch = {"org_id": command["org_id"], "trace_id": command["trace_id"], "events": decision.events}
        sealed = seal(kind, encode(kind.batch_schema, batch), store)
    verdict = None
    if decision.verdict is not None and command["request_id"]:
        verdict = encode("CommandVerdict", {"request_id": command["request_id"], "verdict": decision.verdict.value,
                                            "message": decision.message})
    return Applied(sealed, verdict)


def _sealed_value(kind: ChainKind, body: bytes, first_seq: int, prev: bytes, hashes: list[bytes],
                  advance: Advance, hash_version: int) -> bytes:
    """The sealed record: the raw batch ``body``, its links, (traces) the summary of its head, and
    how its hashes were computed."""
    summary = b""
    if kind.lifecycle:
        closed = advance.state if advance.closed else None
        summary = trace_summary(advance.head.started_at, closed and closed.final_outcome,
                                closed and closed.completed_at)
    return sealed_record(kind.sealed_schema, body, first_seq, prev, hashes, summary, hash_version=hash_version,
                         agent_named=advance.names_agent if kind.agent_field else None)


def replay_sealed(value: bytes, store: ChainStore) -> Advance | None:
    """What a sealed record leaves behind, when the stored head is just before it: the
    record became durable but a crash lost its head write. ``None`` when
    the head already reflects the record (or is not right before it: verify reports that).
    Raises DecodeError for a value that is not a sealed record."""
    decoded = decode(value)
    kind = _BY_SEALED_SCHEMA.get(decoded.schema)
    if kind is None:
        raise DecodeError(f"{decoded.schema} is not a sealed record")
    datum = decoded.datum
    return _replay(kind, kind.chain_key(datum), datum["events"], datum["first_seq"], datum["prev_hash"],
                   datum["hashes"], store)


def _replay(kind: ChainKind, chain: bytes, events: list[dict], first_seq: int, prev_hash: bytes,
            hashes: list[bytes], store: ChainStore) -> Advance | None:
    """Move ``chain``'s head over links made elsewhere, if they start right after it."""
    head = store.head(chain)
    if first_seq != head.seq + 1 or prev_hash != head.hash:
        return None
    named_before = head.agent_named
    for event, link in zip(events, hashes, strict=True):
        if head.seq == 0:
            head.started_at = event["occurred_at"]
        if kind.agent_field and event[kind.agent_field] is not None:
            head.agent_named = True
        head.seq += 1
        head.hash = link
        head.recent += id_digest(event[kind.id_field])
    return _advance(kind, store, chain, head, events, head.agent_named and not named_before)


def kind_of(single_schema: str) -> ChainKind:
    """The chain kind whose events are ``single_schema`` records (TraceEvent, AuditEvent)."""
    return next(k for k in _BY_SEALED_SCHEMA.values() if k.single_schema == single_schema)


def restore_sealed(kind: ChainKind, rows: list[dict], store: ChainStore) -> tuple[bytes, Advance] | None:
    """Rebuild a sealed record from its stored links, when the broker lost it after the sink
    had stored it: ``rows`` are the record's stored events (datum plus ``seq`` and hex
    ``prev_hash``/``hash``). Returns the record and the head it leaves (to save once the record
    is durable again), or None when its links do not start right after the head. Links after
    a gap in ``rows`` (an insert cut short across parts) or another ``hash_version`` (one record
    has one) are left out."""
    rows = sorted(rows, key=lambda r: r["seq"])
    run = rows[:1]
    version = rows[0].get("hash_version", LEGACY_HASH) if rows else LEGACY_HASH
    for row in rows[1:]:
        if row["seq"] != run[-1]["seq"] + 1 or row["prev_hash"] != run[-1]["hash"] or \
                row.get("hash_version", LEGACY_HASH) != version:
            break
        run.append(row)
    fields = [f["name"] for f in record_fields(kind.single_schema)]
    events = [{name: row[name] for name in fields} for row in run]
    first_seq, prev, hashes = run[0]["seq"], bytes.fromhex(run[0]["prev_hash"]), [bytes.fromhex(r["hash"]) for r in run]
    advance = _replay(kind, kind.chain_key(run[0]), events, first_seq, prev, hashes, store)
    if advance is None:
        return None
    batch = {k: run[0][k] for k in kind.batch_keys} | {"events": events}
    body = schema(kind.batch_schema).codec.encode(batch)
    return _sealed_value(kind, body, first_seq, prev, hashes, advance, version), advance
