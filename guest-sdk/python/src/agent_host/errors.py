"""Why an agent could not complete its task: the four cases of WIT
`types.agent-error`, as exceptions.

Raise one from `Agent.run` and the host reports its case and message verbatim.
The errors of the capability modules (`http`, `kv`, `llm`, `tools`) subclass
one of these four, so letting them propagate reports them with the right case:
denials as `CapabilityDenied` (fix the manifest), outages as `Upstream`
(retry later), the agent's own mistakes as `Internal`.
"""


class AgentError(Exception):
    """Base of the four cases; catch it to handle any failure the host would report."""

    def __init__(self, message: str):
        super().__init__(message)
        self.message = message

    def __str__(self) -> str:
        return self.message


class InvalidInput(AgentError):
    """The task input was not acceptable (bad JSON, missing field...); the caller
    should not retry the same input."""


class CapabilityDenied(AgentError):
    """A capability the agent needed was denied by the host; the message says which."""


class Upstream(AgentError):
    """A system the agent depends on (an HTTP API, the model, a tool) failed or
    answered unexpectedly; retrying later may succeed."""


class Internal(AgentError):
    """The agent hit a bug of its own."""
