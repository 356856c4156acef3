"""A generation as one line of OpenAI's chat fine-tuning JSONL: ``{"messages": [...], "tools"?: [...]}``.

The conversation is the event's ``messages`` (else its ``input``: a list of messages, or a text or
JSON value as the user message); its ``output`` is appended as the assistant's reply (a text as the
content, a message object as it is, any other JSON value as its JSON text). Tool calls are kept in
OpenAI's shape (``{"id", "type": "function", "function": {"name", "arguments"}}``, the arguments as
JSON text); calls written as ``{"id", "name", "args"}`` (the read API's seed 002 shape) are converted,
and so are the event's ``tools``. A generation without an assistant message teaches nothing: it
gives no line.
"""

from __future__ import annotations

from typing import Any

from api.exports.json_text import compact_json

ROLES = ("system", "developer", "user", "assistant", "tool")


def tool_call(call: Any) -> Any:
    """A tool call in OpenAI's shape; one already in it (or not an object) as it is."""
    if not isinstance(call, dict) or "function" in call:
        return call
    args = next((call[k] for k in ("args", "arguments", "input") if k in call), {})
    arguments = args if isinstance(args, str) else compact_json(args)
    out: dict[str, Any] = {"id": call["id"]} if "id" in call else {}
    return out | {"type": "function", "function": {"name": call.get("name"), "arguments": arguments}}


def tool(definition: Any) -> Any:
    """A tool definition in OpenAI's shape (``{"type": "function", "function": {name, description, parameters}}``)."""
    if not isinstance(definition, dict) or "function" in definition:
        return definition
    return {"type": "function",
            "function": {k: definition[k] for k in ("name", "description", "parameters") if k in definition}}


def message(item: Any) -> dict[str, Any] | None:
    """A chat message (content a text, a list of parts or null; tool calls in OpenAI's shape); None
    for an item that is not an object with one of the chat roles."""
    if not isinstance(item, dict) or item.get("role") not in ROLES:
        return None
    out = dict(item)
    content = out.get("content")
    if content is not None and not isinstance(content, str | list):
        out["content"] = compact_json(content)
    if isinstance(out.get("tool_calls"), list):
        out["tool_calls"] = [tool_call(c) for c in out["tool_calls"]]
    return out


def _conversation(doc: dict[str, Any]) -> list[dict[str, Any]]:
    source = doc.get("messages")
    if source is None:
        source = doc.get("input")
    if source is None:
        return []
    if not isinstance(source, list):
        return [{"role": "user", "content": source if isinstance(source, str) else compact_json(source)}]
    return [m for m in map(message, source) if m is not None]


def _reply(output: Any) -> dict[str, Any] | None:
    if output is None:
        return None
    if isinstance(output, str):
        return {"role": "assistant", "content": output}
    if isinstance(output, dict) and output.get("role") == "assistant":
        return message(output)
    return {"role": "assistant", "content": compact_json(output)}


def chat_example(doc: dict[str, Any]) -> dict[str, Any] | None:
    """The fine-tuning example of one generation (its event document); None without an assistant message."""
    messages = _conversation(doc)
    reply = _reply(doc.get("output"))
    if reply is not None:
        messages.append(reply)
    if not any(m["role"] == "assistant" for m in messages):
        return None
    example: dict[str, Any] = {"messages": messages}
    if isinstance(doc.get("tools"), list) and doc["tools"]:
        example["tools"] = [tool(t) for t in doc["tools"]]
    return example
