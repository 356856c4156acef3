"""One support-agent conversation (seed 002's example): messages with a tool call, and the tool."""

SYSTEM = {"role": "system", "content": "You are a helpful customer support agent..."}
USER = {"role": "user", "content": "I need help with my order"}
ASSISTANT = {"role": "assistant", "content": "I'd be happy to help with your order...",
             "tool_calls": [{"id": "call_1", "name": "search_orders", "args": {"query": "recent orders"}}]}
TOOL = {"role": "tool", "content": "Found 3 recent orders...", "tool_call_id": "call_1"}
TOOLS = [{"name": "search_orders", "description": "Search customer orders",
          "parameters": {"type": "object", "properties": {"query": {"type": "string"}}}, "metadata": {}}]
