"""Tools on remote MCP servers the manifest grants (`spec.capabilities.mcp`).

The host is the MCP client: it connects only where the manifest allows, adds
the server's credentials (the agent never holds them), shows only the granted
tools and keeps each server within its per-invocation budgets of calls and
response bytes. An agent loop is: `list` the tools, offer them to the model
with `model_tools`, and answer each tool call the model makes with `answer`,
which runs it on its MCP server::

    from agent_host import llm, tools

    granted = tools.list()
    messages = [llm.Message.user("Is checkout healthy?")]
    while True:
        reply = llm.complete(messages, tools.model_tools(granted))
        messages.append(reply.message)
        if not reply.tool_calls:
            break
        for call in reply.tool_calls:
            # The tool's result, or its error as text the model can act on.
            messages.append(tools.answer(granted, call))
"""

import json
from dataclasses import dataclass
from typing import Any, List, Optional, Sequence

from componentize_py_types import Err
from wit_world.imports import tools as wit

from . import errors, llm
from .errors import AgentError
from ._json import dumps

#: Longest tool name model APIs accept.
MAX_MODEL_NAME_CHARS = 64


class Error(AgentError):
    """Base of every tool failure. Policy refusals (`Denied`, `BudgetExceeded`)
    are `CapabilityDenied`; arguments the agent built wrong, `Internal`; the
    server's and the tool's failures, `Upstream`."""


class Denied(Error, errors.CapabilityDenied):
    """The server or tool is not granted; nothing was sent."""

    def __init__(self, detail: str):
        super().__init__(f"MCP tool denied by the host: {detail}")


class InvalidArguments(Error, errors.Internal):
    """The arguments do not match the tool's input schema (not sent), or the server refused them."""

    def __init__(self, detail: str):
        super().__init__(f"invalid tool arguments: {detail}")


class ToolError(Error, errors.Upstream):
    """The tool ran and reported an error."""

    def __init__(self, detail: str):
        super().__init__(f"the tool failed: {detail}")


class Upstream(Error, errors.Upstream):
    """The server failed, timed out, was unreachable or broke the protocol."""

    def __init__(self, detail: str):
        super().__init__(f"MCP server failed: {detail}")


class BudgetExceeded(Error, errors.CapabilityDenied):
    """A budget of the manifest (calls or response bytes per invocation)."""

    def __init__(self, detail: str):
        super().__init__(f"MCP call refused, over budget: {detail}")


_FROM_WIT = {
    wit.Error_Denied: Denied,
    wit.Error_InvalidArguments: InvalidArguments,
    wit.Error_ToolError: ToolError,
    wit.Error_Upstream: Upstream,
    wit.Error_BudgetExceeded: BudgetExceeded,
}


def from_wit_error(e: wit.Error) -> Error:
    """The one mapping from WIT `tools.error` to `Error`."""
    return _FROM_WIT[type(e)](e.value)


@dataclass
class Tool:
    """A tool the agent may call (WIT `tools.tool`)."""

    #: The server, as the manifest names it (`spec.capabilities.mcp[].name`).
    server: str
    #: The tool's name on that server.
    name: str
    description: str
    #: JSON Schema of the arguments object, as text.
    input_schema: str

    def model_name(self) -> str:
        """The name the model sees: `server__tool`, every character but ASCII
        letters, digits and `-` replaced by `_`, cut to 64 characters: what
        model APIs accept."""
        name = f"{self.server}__{self.name}"
        safe = "".join(c if (c.isascii() and c.isalnum()) or c == "-" else "_" for c in name)
        return safe[:MAX_MODEL_NAME_CHARS]


@dataclass
class ToolResult:
    """What a tool returned (WIT `tools.tool-result`)."""

    #: Its text content items, joined by newlines.
    text: str
    #: Every content item (MCP content blocks), a JSON array as text.
    content: str
    #: Its structured result, a JSON object as text, when it gave one.
    structured: Optional[str]

    def structured_json(self) -> Any:
        """The structured result parsed as JSON, or None when the tool gave none."""
        return None if self.structured is None else json.loads(self.structured)


def list() -> List[Tool]:  # noqa: A001 - mirrors the Rust SDK's tools::list
    """The granted tools of every granted server, with their input schemas."""
    try:
        found = wit.list_tools()
    except Err as e:
        raise from_wit_error(e.value) from None
    return [Tool(t.server, t.name, t.description, t.input_schema) for t in found]


def _call(server: str, name: str, arguments: str) -> ToolResult:
    try:
        r = wit.call_tool(server, name, arguments)
    except Err as e:
        raise from_wit_error(e.value) from None
    return ToolResult(r.text, r.content, r.structured)


def call(server: str, name: str, arguments: Any) -> ToolResult:
    """Calls tool `name` of `server` with `arguments` (a dict, sent as a JSON object)."""
    return _call(server, name, dumps(arguments))


def model_tools(tools: Sequence[Tool]) -> List[llm.Tool]:
    """`tools` as model tool definitions, named by `Tool.model_name`."""
    return [llm.Tool(t.model_name(), t.description, t.input_schema) for t in tools]


def run_model_call(tools: Sequence[Tool], call: llm.ToolCall) -> str:
    """Runs the model's tool `call` on its MCP server and returns the text for
    the model: the structured result if any, else the text content.

    Raises only for what the model cannot fix (a tool outside `tools`, a
    denial, a spent budget, a failed server); the tool's own error and invalid
    arguments are returned as text starting `error: `.
    """
    tool = next((t for t in tools if t.model_name() == call.name), None)
    if tool is None:
        raise Denied(f"the model called `{call.name}`, which is not one of the listed tools")
    try:
        result = _call(tool.server, tool.name, call.arguments)
    except (ToolError, InvalidArguments) as e:
        return f"error: {e}"
    return result.structured if result.structured is not None else result.text


def answer(tools: Sequence[Tool], call: llm.ToolCall) -> llm.Message:
    """`run_model_call` as the tool message that answers `call`."""
    return llm.Message.tool_result(call.id, run_model_call(tools, call))
