"""One OTLP span → one tracehouse trace event: the JSON object ``POST /v1/events`` accepts, so the
same validation, size limits and chaining apply. The mapping (README "OpenTelemetry in"):

- ids as lower-case hex (trace id → ``trace_id``, span id → ``event_id``, parent → ``parent_id``),
  start/end time → ``occurred_at``/``end_time`` (milliseconds), status → ``STATUS_CODE_*``;
- the GenAI semantic conventions (``gen_ai.*``, with the older names beside the current ones) and
  OpenInference's (``llm.*``, ``input.value``, ``openinference.span.kind``) → type, class, model,
  tokens, model_config, messages, input, output, agent, session, user and tags;
- every other attribute, the resource's first (``service.name`` foremost), kept in ``metadata``
  as text (non-string values as JSON).
"""

from __future__ import annotations

import base64
import json
from typing import Any

from opentelemetry.proto.common.v1.common_pb2 import AnyValue
from opentelemetry.proto.trace.v1.trace_pb2 import Span, Status

from schemas.model import ValidationError

_JSON_MIME = "application/json"

_STATUS = {Status.STATUS_CODE_UNSET: "STATUS_CODE_UNSET", Status.STATUS_CODE_OK: "STATUS_CODE_OK",
           Status.STATUS_CODE_ERROR: "STATUS_CODE_ERROR"}
_KIND = {Span.SPAN_KIND_INTERNAL: "internal", Span.SPAN_KIND_SERVER: "server", Span.SPAN_KIND_CLIENT: "client",
         Span.SPAN_KIND_PRODUCER: "producer", Span.SPAN_KIND_CONSUMER: "consumer"}

#: ``gen_ai.operation.name`` → (type, class)
_GEN_AI_OPERATIONS = {
    "chat": ("GENERATION", "llm"), "text_completion": ("GENERATION", "llm"),
    "generate_content": ("GENERATION", "llm"), "embeddings": ("GENERATION", "llm"),
    "execute_tool": ("tool.executed", "tool"),
    "invoke_agent": ("SPAN", "agent"), "create_agent": ("SPAN", "agent"),
}
#: OpenInference's ``openinference.span.kind`` → (type, class); other kinds are spans of their kind
_OPENINFERENCE_KINDS = {"LLM": ("GENERATION", "llm"), "EMBEDDING": ("GENERATION", "llm"),
                        "TOOL": ("tool.executed", "tool"), "AGENT": ("SPAN", "agent")}

#: Event fields taken from the first attribute present, in order (current names before older ones);
#: ``provider`` goes into model_config.
_FIRST_OF: tuple[tuple[str, tuple[str, ...]], ...] = (
    ("model", ("gen_ai.response.model", "gen_ai.request.model", "llm.model_name")),
    ("input_tokens", ("gen_ai.usage.input_tokens", "gen_ai.usage.prompt_tokens", "llm.token_count.prompt")),
    ("output_tokens", ("gen_ai.usage.output_tokens", "gen_ai.usage.completion_tokens",
                       "llm.token_count.completion")),
    ("total_tokens", ("llm.token_count.total", "gen_ai.usage.total_tokens")),
    ("cost", ("llm.cost.total", "gen_ai.usage.cost")),
    ("agent_id", ("gen_ai.agent.id", "agent.id")),
    ("agent_name", ("gen_ai.agent.name", "agent.name")),
    ("session_id", ("gen_ai.conversation.id", "session.id")),
    ("user_id", ("user.id", "enduser.id")),
    ("provider", ("gen_ai.provider.name", "gen_ai.system", "llm.provider", "llm.system")),
)
#: attribute → (field, rank): one set intersection finds a span's, however many attributes it has
_FIELD_OF = {key: (field, rank) for field, keys in _FIRST_OF for rank, key in enumerate(keys)}
_INTEGER_FIELDS = frozenset({"input_tokens", "output_tokens", "total_tokens"})
_REQUEST_PREFIX = "gen_ai.request."
#: Flattened message lists: OpenLLMetry's ``gen_ai.prompt.0.role``, OpenInference's
#: ``llm.input_messages.0.message.content``: (prefix, suffix before the message's own keys).
_FLAT_INPUT = (("gen_ai.prompt.", ""), ("llm.input_messages.", "message."))
_FLAT_OUTPUT = (("gen_ai.completion.", ""), ("llm.output_messages.", "message."))
#: The attribute prefixes of the request parameters and the flattened messages: a span's keys are
#: scanned for them once
_SCANNED_PREFIXES = (_REQUEST_PREFIX, *(prefix for prefix, _ in _FLAT_INPUT + _FLAT_OUTPUT))
#: The older GenAI content as span events: a message per event, or the whole prompt/completion.
_MESSAGE_EVENTS = {"gen_ai.system.message": "system", "gen_ai.user.message": "user",
                   "gen_ai.assistant.message": "assistant", "gen_ai.tool.message": "tool"}


def span_event(context: dict[str, str], span: Span) -> dict[str, Any]:
    """The trace event (``POST /v1/events``'s JSON object) of one span (``context``: the metadata
    of its resource and scope, from ``spans``); ValidationError naming the event field when an id
    is malformed. Timestamps are cut to milliseconds."""
    attrs = {kv.key: any_value(kv.value) for kv in span.attributes}
    status, events = span.status, span.events  # each protobuf field read once: reads cost ~0.2 µs
    event: dict[str, Any] = {
        "event_id": _hex_id("event_id", span.span_id, 8, "span_id"),
        "trace_id": _hex_id("trace_id", span.trace_id, 16, "trace_id"),
        "parent_id": _hex_id("parent_id", span.parent_span_id, 8, "parent_span_id") if span.parent_span_id else None,
        "name": span.name or None,
        "occurred_at": span.start_time_unix_nano // 1_000_000,
        "end_time": span.end_time_unix_nano // 1_000_000 if span.end_time_unix_nano else None,
        "status": _STATUS.get(status.code, "STATUS_CODE_UNSET"),
    }
    event["type"], event["class"] = _type_and_class(attrs)
    fields = _first_values(attrs)
    provider = fields.pop("provider", None)
    event.update(fields)
    if "total_tokens" not in event and isinstance(event.get("input_tokens"), int) \
            and isinstance(event.get("output_tokens"), int):
        event["total_tokens"] = event["input_tokens"] + event["output_tokens"]
    scanned = [key for key in attrs if key.startswith(_SCANNED_PREFIXES)]
    config = _model_config(attrs, provider, scanned)
    if config:
        event["model_config"] = config
    messages = _messages(attrs, events, "input", scanned)
    if messages is not None:
        event["messages"] = messages
    output = _messages(attrs, events, "output", scanned)
    if output is None:
        output = _json_or_text(attrs.pop("gen_ai.tool.call.result", None))
    value_out = _io_value(attrs, "output")
    event["output"] = output if output is not None else value_out
    arguments = _json_or_text(attrs.pop("gen_ai.tool.call.arguments", None))
    value_in = _io_value(attrs, "input")
    event["input"] = arguments if arguments is not None else value_in
    tags = attrs.pop("tag.tags", None)
    if isinstance(tags, list) and all(isinstance(t, str) for t in tags):
        event["tags"] = tags
    elif tags is not None:
        attrs["tag.tags"] = tags
    event["metadata"] = _metadata(context, span, status, events, attrs)
    return {k: v for k, v in event.items() if v is not None}


def _type_and_class(attrs: dict[str, Any]) -> tuple[str, str | None]:
    operation = attrs.pop("gen_ai.operation.name", None)
    if isinstance(operation, str) and operation in _GEN_AI_OPERATIONS:
        return _GEN_AI_OPERATIONS[operation]
    if operation is not None:
        attrs["gen_ai.operation.name"] = operation  # an operation this mapping does not know: kept
    kind = attrs.pop("openinference.span.kind", None)
    if isinstance(kind, str) and kind:
        return _OPENINFERENCE_KINDS.get(kind.upper(), ("SPAN", kind.lower()))
    return "SPAN", None


def _first_values(attrs: dict[str, Any]) -> dict[str, Any]:
    """``_FIRST_OF``'s fields: each from the first of its attributes present (all of them removed)."""
    found: dict[str, tuple[int, Any]] = {}
    for key in attrs.keys() & _FIELD_OF.keys():
        field, rank = _FIELD_OF[key]
        value = attrs.pop(key)
        if value is not None and (field not in found or rank < found[field][0]):
            found[field] = (rank, value)
    values = {field: value for field, (_, value) in found.items()}
    for field in _INTEGER_FIELDS & values.keys():  # a count sent as a whole double
        if isinstance(values[field], float) and values[field].is_integer():
            values[field] = int(values[field])
    return values


def _model_config(attrs: dict[str, Any], provider: Any, scanned: list[str]) -> dict[str, Any] | None:
    """The provider (seed 002's ``modelConfig.provider``), then the request parameters:
    ``gen_ai.request.*`` (but the model) by their short names, over OpenInference's
    ``llm.invocation_parameters`` (a JSON object as text)."""
    config: dict[str, Any] = {} if provider is None else {"provider": provider}
    invocation = _json_or_text(attrs.pop("llm.invocation_parameters", None))
    if isinstance(invocation, dict):
        config.update(invocation)
    elif invocation is not None:
        attrs["llm.invocation_parameters"] = invocation
    for key in scanned:
        if key.startswith(_REQUEST_PREFIX):
            config[key[len(_REQUEST_PREFIX):]] = attrs.pop(key)
    return config or None


def _messages(attrs: dict[str, Any], events: Any, direction: str, scanned: list[str]) -> Any:
    """The input (prompt) or output (completion) messages, from the first convention present:
    ``gen_ai.{input,output}.messages``, the flattened lists, or the older span events."""
    structured = attrs.pop(f"gen_ai.{direction}.messages", None)
    if structured is None and not scanned and not events:
        return None
    flat = [_flat_messages(attrs, scanned, prefix, inner)
            for prefix, inner in (_FLAT_INPUT if direction == "input" else _FLAT_OUTPUT)]
    if structured is not None:
        value = _json_or_text(structured)
        return [_chat_message(m) for m in value] if isinstance(value, list) else value
    for found in flat:
        if found:
            return found
    return _event_messages(events, direction)


_CHAT_PARTS = frozenset({"text", "tool_call", "tool_call_response"})


def _chat_message(message: Any) -> Any:
    """A GenAI convention message (``{role, parts: [...]}``) in the chat shape the read API and the
    fine-tuning export use (``{role, content, tool_calls, tool_call_id}``) when its parts are text,
    tool calls or one tool response; any other message as it came (images, reasoning, ...)."""
    if not isinstance(message, dict) or not isinstance(message.get("parts"), list):
        return message
    parts = message["parts"]
    if not all(isinstance(p, dict) and p.get("type") in _CHAT_PARTS for p in parts):
        return message
    texts = [p.get("content") for p in parts if p["type"] == "text"]
    calls = [p for p in parts if p["type"] == "tool_call"]
    responses = [p for p in parts if p["type"] == "tool_call_response"]
    if not all(isinstance(t, str) for t in texts) or (responses and (texts or calls or len(responses) > 1)):
        return message
    chat: dict[str, Any] = {k: v for k, v in message.items() if k != "parts"}
    if responses:
        chat["tool_call_id"] = responses[0].get("id")
        chat["content"] = responses[0].get("response")
    else:
        chat["content"] = "".join(texts) if texts else None
    if calls:
        chat["tool_calls"] = [{"id": c.get("id"), "type": "function", "function": {
            "name": c.get("name"),
            "arguments": c.get("arguments") if isinstance(c.get("arguments"), str) else json.dumps(c.get("arguments"))}}
            for c in calls]
    return chat


def _flat_messages(attrs: dict[str, Any], scanned: list[str], prefix: str, inner: str) -> list[dict[str, Any]]:
    """``{prefix}{i}.{inner}{key}`` attributes (among ``scanned``) as a list of messages ordered by ``i``."""
    by_index: dict[int, dict[str, Any]] = {}
    for key in scanned:
        if not key.startswith(prefix):
            continue
        index, _, rest = key[len(prefix):].partition(".")
        if not index.isdigit() or not rest.startswith(inner) or len(rest) == len(inner):
            continue
        by_index.setdefault(int(index), {})[rest[len(inner):]] = attrs.pop(key)
    return [by_index[i] for i in sorted(by_index)]


def _event_messages(events: Any, direction: str) -> Any:
    """The older GenAI content recorded as span events: ``gen_ai.content.prompt``/``completion``
    (the whole list as JSON text), or one ``gen_ai.<role>.message``/``gen_ai.choice`` per message."""
    whole, attribute = ("gen_ai.content.prompt", "gen_ai.prompt") if direction == "input" else \
        ("gen_ai.content.completion", "gen_ai.completion")
    found: list[Any] = []
    for ev in events:
        attrs = {kv.key: any_value(kv.value) for kv in ev.attributes}
        if ev.name == whole and attribute in attrs:
            return _json_or_text(attrs[attribute])
        if direction == "input" and ev.name in _MESSAGE_EVENTS:
            found.append({"role": attrs.get("role", _MESSAGE_EVENTS[ev.name]), **_content(attrs)})
        elif direction == "output" and ev.name == "gen_ai.choice":
            found.append(_content(attrs))
    return found or None


def _content(attrs: dict[str, Any]) -> dict[str, Any]:
    return {k: _json_or_text(v) if k in ("message", "tool_calls") else v
            for k, v in attrs.items() if k != "role" and not k.startswith("gen_ai.")}


def _io_value(attrs: dict[str, Any], direction: str) -> Any:
    """OpenInference's ``input.value``/``output.value``: parsed when its mime type is JSON."""
    value = attrs.pop(f"{direction}.value", None)
    mime = attrs.pop(f"{direction}.mime_type", None)
    if value is not None and isinstance(mime, str) and mime.startswith(_JSON_MIME):
        return _json_or_text(value)
    if mime is not None:
        attrs[f"{direction}.mime_type"] = mime
    return value


_SPECIAL_EVENTS = frozenset({"gen_ai.content.prompt", "gen_ai.content.completion", "gen_ai.choice", *_MESSAGE_EVENTS})


def _metadata(context: dict[str, str], span: Span, status: Status, events: Any,
              attrs: dict[str, Any]) -> dict[str, str]:
    """The resource's and scope's (``context``), what OTLP says beyond the event fields, then every
    span attribute no field took, as text."""
    metadata = dict(context)
    kind = _KIND.get(span.kind)
    if kind is not None:
        metadata["otel.span.kind"] = kind
    if status.message:
        metadata["otel.status.message"] = status.message
    if span.trace_state:
        metadata["otel.trace_state"] = span.trace_state
    if events:
        others = [{"name": ev.name, "time_unix_nano": ev.time_unix_nano,
                   "attributes": {kv.key: any_value(kv.value) for kv in ev.attributes}}
                  for ev in events if ev.name not in _SPECIAL_EVENTS]
        if others:
            metadata["otel.events"] = as_text(others)
    links = span.links
    if links:
        metadata["otel.links"] = as_text([{"trace_id": link.trace_id.hex(), "span_id": link.span_id.hex(),
                                         "attributes": {kv.key: any_value(kv.value) for kv in link.attributes}}
                                        for link in links])
    for key, value in attrs.items():
        metadata[key] = as_text(value)
    return metadata


def _hex_id(field: str, raw: bytes, size: int, otlp_name: str) -> str:
    if len(raw) != size or not raw.strip(b"\x00"):
        raise ValidationError(field, f"the span's {otlp_name} must be {size} bytes ({size * 2} hex digits), "
                                     "not all zero")
    return raw.hex()


def any_value(value: AnyValue) -> Any:
    """An ``AnyValue`` as plain Python: str, bool, int, float, list, dict, or base64 text for bytes."""
    which = value.WhichOneof("value")
    if which == "string_value":
        return value.string_value
    if which == "int_value":
        return value.int_value
    if which == "bool_value":
        return value.bool_value
    if which == "double_value":
        return value.double_value
    if which == "array_value":
        return [any_value(v) for v in value.array_value.values]
    if which == "kvlist_value":
        return {kv.key: any_value(kv.value) for kv in value.kvlist_value.values}
    if which == "bytes_value":
        return base64.b64encode(value.bytes_value).decode()
    return None


def as_text(value: Any) -> str:
    """A metadata value: strings as they are, anything else as JSON."""
    if isinstance(value, str):
        return value
    return json.dumps(value, separators=(",", ":"), ensure_ascii=False)


def _json_or_text(value: Any) -> Any:
    """A JSON document's value when ``value`` is text holding one, otherwise ``value``."""
    if isinstance(value, str) and value[:1] in ("{", "["):
        try:
            return json.loads(value)
        except (ValueError, RecursionError):
            return value
    return value

