"""The one function an agent implements, and the glue that exports it as the
component's `run`."""

import sys
import traceback
from typing import Callable, Type, Union

from componentize_py_types import Err
from wit_world.imports import agent_host_agent_types as wit

from .errors import AgentError, CapabilityDenied, Internal, InvalidInput, Upstream
from .task import Output, Task


class Agent:
    """Base class of an agent: override `run`.

    The host creates a fresh instance of the component for every task and calls
    `run` exactly once; the returned `Output` (or the `AgentError` raised) is
    reported to the caller verbatim. Register the class with `export`.
    """

    def run(self, task: Task) -> Output:
        """Handles one task."""
        raise NotImplementedError(f"{type(self).__name__} does not override Agent.run")


# One case per exception class; subclasses (kv.Denied...) map through their base.
_CASES = (
    (InvalidInput, wit.AgentError_InvalidInput),
    (CapabilityDenied, wit.AgentError_CapabilityDenied),
    (Upstream, wit.AgentError_Upstream),
    (Internal, wit.AgentError_Internal),
)


def to_wit_error(e: AgentError) -> wit.AgentError:
    """The WIT `agent-error` case reporting `e`."""
    for cls, case in _CASES:
        if isinstance(e, cls):
            return case(str(e))
    # A direct AgentError instance names no case: the agent's own mistake.
    return wit.AgentError_Internal(str(e))


def invoke(agent: Union[Type[Agent], Callable[[Task], Output]], task: Task) -> Output:
    """Runs `agent` on `task`, turning every failure into an `AgentError`.

    An exception that is not an `AgentError` is a bug of the agent: its
    traceback goes to stderr (captured in the host log) and it is reported as
    `Internal` naming the exception, rather than trapping, so the caller sees why.
    """
    try:
        run = agent().run if isinstance(agent, type) else agent
        output = run(task)
    except AgentError:
        raise
    except Exception as e:
        traceback.print_exc(file=sys.stderr)
        raise Internal(f"uncaught {type(e).__name__}: {e}") from e
    if not isinstance(output, Output):
        raise Internal(f"run returned {type(output).__name__}, not agent_host.Output")
    return output


def export(agent: Union[Type[Agent], Callable[[Task], Output]]) -> type:
    """The class componentize-py exports as the component's `run`: assign it to
    `WitWorld` in the app module (the Python form of the Rust SDK's
    `export_agent!`).

    `agent` is an `Agent` subclass (instantiated once per task) or a plain
    function taking a `Task` and returning an `Output`::

        from agent_host import Agent, Output, Task, export

        class Echo(Agent):
            def run(self, task: Task) -> Output:
                return Output.raw(task.input)

        WitWorld = export(Echo)
    """
    if not (isinstance(agent, type) and issubclass(agent, Agent)) and not callable(agent):
        raise TypeError(f"export() takes an Agent subclass or a function, not {agent!r}")

    class WitWorld:
        def run(self, task: wit.Task) -> wit.Output:
            sdk_task = Task(task.id, task.input, list(task.metadata))
            try:
                return wit.Output(invoke(agent, sdk_task).data)
            except AgentError as e:
                raise Err(to_wit_error(e)) from None

    WitWorld.__qualname__ = f"WitWorld[{getattr(agent, '__name__', 'agent')}]"
    return WitWorld
