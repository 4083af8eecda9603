"""Guest SDK for agent-host: write an AI agent in Python as a WebAssembly
component (`wasm32-wasip2`, built with componentize-py) that the host runs
under its `Agent` manifest.

An agent is one `Agent` subclass plus one `WitWorld = export(...)` line in the
app module. The host creates a fresh instance for every task, calls `run`
once and drops the instance. Everything the agent reaches outside its sandbox
goes through a capability its manifest grants: `http` (outgoing requests to
declared URLs), `env` (declared variables), files under declared directories
(plain `open`), `kv` (key-value state committed with the invocation), `llm`
(the granted model), `tools` (granted tools on remote MCP servers) and `log`
(structured records)::

    from agent_host import Agent, Output, Task, env, export, http, log

    class Status(Agent):
        def run(self, task: Task) -> Output:
            service = task.input_json()["service"]
            base = env.require("STATUS_URL")  # undeclared -> CapabilityDenied
            log.info("checking", service=service)
            status = http.get_json(base + http.encode_component(service))
            return Output.json({"service": service, "status": status})

    WitWorld = export(Status)

Build it with `scripts/build-python-agent.py APP_DIR OUT.wasm` (componentize-py
against `wit/`, world `agent`).
"""

from . import env, http, kv, llm, log, tools
from .agent import Agent, export
from .errors import AgentError, CapabilityDenied, Internal, InvalidInput, Upstream
from .task import Output, Task

__all__ = [
    "Agent",
    "AgentError",
    "CapabilityDenied",
    "Internal",
    "InvalidInput",
    "Output",
    "Task",
    "Upstream",
    "env",
    "export",
    "http",
    "kv",
    "llm",
    "log",
    "tools",
]
