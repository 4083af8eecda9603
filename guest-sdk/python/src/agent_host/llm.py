"""Chat completions from the model the manifest grants (`spec.capabilities.llm`).

The host calls the provider on the agent's behalf: the agent names no endpoint
and holds no API key, and the manifest's token and request budgets are checked
before anything is sent. The provider and model are the manifest's choice, so
switching them needs no agent change::

    from agent_host import llm

    messages = [
        llm.Message.system("You triage alerts. Page for outages."),
        llm.Message.user("db-1 is down"),
    ]
    tools = [llm.Tool.new("page_oncall", "Pages the on-call engineer",
                          {"type": "object", "properties": {"reason": {"type": "string"}}})]
    # Past a budget of the manifest -> llm.BudgetExceeded, nothing sent.
    answer = llm.complete(messages, tools, llm.Options(max_tokens=256))
    for call in answer.tool_calls:
        print(call.name, call.arguments_json()["reason"])
"""

import json
from dataclasses import dataclass, field
from typing import Any, List, Optional, Sequence

from componentize_py_types import Err
from wit_world.imports import llm as wit

from . import errors
from .errors import AgentError
from ._json import dumps

#: Who wrote a message (WIT `llm.role`): SYSTEM, USER, ASSISTANT, TOOL.
Role = wit.Role
#: Why the model stopped (WIT `llm.finish-reason`): STOP, LENGTH, TOOL_CALLS, CONTENT_FILTER, OTHER.
FinishReason = wit.FinishReason


class Error(AgentError):
    """Base of every completion failure. Policy refusals (`Denied`,
    `BudgetExceeded`) are `CapabilityDenied`; a request the host found
    malformed is the agent's bug, `Internal`; provider failures and unusable
    tool arguments are `Upstream`."""


class Denied(Error, errors.CapabilityDenied):
    """The agent has no `spec.capabilities.llm` grant."""

    def __init__(self, detail: str):
        super().__init__(f"model call denied by the host: {detail}")


class BudgetExceeded(Error, errors.CapabilityDenied):
    """A budget of the manifest (tokens or requests per invocation, tokens per
    minute) would be exceeded; the request was not sent. The message names it."""

    def __init__(self, detail: str):
        super().__init__(f"model call refused, over budget: {detail}")


class InvalidRequest(Error, errors.Internal):
    """The host refused the request as malformed (too large, bad tool schema...)."""

    def __init__(self, detail: str):
        super().__init__(f"invalid model request: {detail}")


class Upstream(Error, errors.Upstream):
    """The provider failed or refused after the host's retries."""

    def __init__(self, detail: str):
        super().__init__(f"model provider failed: {detail}")


class ToolArguments(Error, errors.Upstream):
    """The model called a tool with arguments that are not a JSON document."""

    def __init__(self, tool: str, detail: str):
        super().__init__(f"the model's arguments for tool `{tool}` do not fit: {detail}")
        self.tool = tool


_FROM_WIT = {
    wit.Error_Denied: Denied,
    wit.Error_BudgetExceeded: BudgetExceeded,
    wit.Error_InvalidRequest: InvalidRequest,
    wit.Error_Upstream: Upstream,
}


def from_wit_error(e: wit.Error) -> Error:
    """The one mapping from WIT `llm.error` to `Error`."""
    return _FROM_WIT[type(e)](e.value)


@dataclass
class ToolCall:
    """A function call the model asked for (WIT `llm.tool-call`)."""

    #: Provider-assigned id; answer it with `Message.tool_result(call.id, ...)`.
    id: str
    #: The tool's name, one of the request's tools.
    name: str
    #: The arguments, a JSON object as text.
    arguments: str

    def arguments_json(self) -> Any:
        """The arguments parsed as JSON; raises `ToolArguments` naming the tool if they are not JSON."""
        try:
            return json.loads(self.arguments)
        except ValueError as e:
            raise ToolArguments(self.name, str(e)) from None


@dataclass
class Message:
    """One chat message (WIT `llm.message`); build it with `system`, `user`,
    `assistant` or `tool_result`, or keep the model's reply as is."""

    role: Role
    #: Text content (may be empty when the message only carries tool calls).
    content: str
    #: Tool calls requested by an assistant message.
    tool_calls: List[ToolCall] = field(default_factory=list)
    #: For a tool message: the id of the call it answers.
    tool_call_id: Optional[str] = None

    @classmethod
    def system(cls, content: str) -> "Message":
        """Instructions for the model."""
        return cls(Role.SYSTEM, content)

    @classmethod
    def user(cls, content: str) -> "Message":
        """The user's (or the task's) words."""
        return cls(Role.USER, content)

    @classmethod
    def assistant(cls, content: str) -> "Message":
        """An earlier answer of the model, as text."""
        return cls(Role.ASSISTANT, content)

    @classmethod
    def tool_result(cls, call_id: str, content: str) -> "Message":
        """The result of the tool call `call_id` (a `ToolCall.id`)."""
        return cls(Role.TOOL, content, [], call_id)


@dataclass
class Tool:
    """A function the model may ask for (WIT `llm.tool`)."""

    name: str
    description: str
    #: JSON Schema of the arguments object, as text.
    parameters: str

    @classmethod
    def new(cls, name: str, description: str, parameters: Any) -> "Tool":
        """A tool whose arguments object follows the JSON Schema `parameters` (a dict)."""
        return cls(name, description, dumps(parameters))


@dataclass
class Options:
    """Sampling options; `Options()` leaves every one to the provider (and the
    token cap to the manifest)."""

    max_tokens: Optional[int] = None
    temperature: Optional[float] = None
    top_p: Optional[float] = None
    stop: List[str] = field(default_factory=list)


@dataclass
class Usage:
    """Tokens one request consumed (WIT `llm.usage`)."""

    prompt_tokens: int
    completion_tokens: int


@dataclass
class Response:
    """The model's answer (WIT `llm.response`)."""

    #: The assistant message, with any tool calls.
    message: Message
    finish_reason: FinishReason
    usage: Usage

    @property
    def tool_calls(self) -> List[ToolCall]:
        """The tool calls the model asked for, in its order (empty if none)."""
        return self.message.tool_calls

    @property
    def text(self) -> str:
        """The answer's text (may be empty when it only carries tool calls)."""
        return self.message.content


def _to_wit_message(m: Message) -> wit.Message:
    calls = [wit.ToolCall(c.id, c.name, c.arguments) for c in m.tool_calls]
    return wit.Message(m.role, m.content, calls, m.tool_call_id)


def _from_wit_message(m: wit.Message) -> Message:
    calls = [ToolCall(c.id, c.name, c.arguments) for c in m.tool_calls]
    return Message(m.role, m.content, calls, m.tool_call_id)


def complete(
    messages: Sequence[Message], tools: Sequence[Tool] = (), options: Optional[Options] = None
) -> Response:
    """Sends `messages` (with the `tools` the model may call) to the granted
    model and returns its answer.

    The host refuses the call, unsent, with `Denied` without the grant and
    `BudgetExceeded` when a budget of the manifest would be passed; `Upstream`
    means the provider failed after the host's retries.
    """
    o = options or Options()
    request = wit.Request(
        [_to_wit_message(m) for m in messages],
        [wit.Tool(t.name, t.description, t.parameters) for t in tools],
        wit.Options(o.max_tokens, o.temperature, o.top_p, list(o.stop)),
    )
    try:
        answer = wit.complete(request)
    except Err as e:
        raise from_wit_error(e.value) from None
    usage = Usage(answer.usage.prompt_tokens, answer.usage.completion_tokens)
    return Response(_from_wit_message(answer.message), answer.finish_reason, usage)
