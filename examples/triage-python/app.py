"""`triage` in Python: decides what to do about an alert with a model and its
granted tools, and remembers handled alerts so a duplicate is recognised
without asking the model again. Same behaviour and output as examples/triage
(Rust).

Input: `{"id": "...", "alert": "...", "service": "...", "summary": "..."}`.
Environment: `TICKETS_URL` and `PAGER_URL`, the two tools' endpoints (granted
in the manifest's `http` rules). State: bucket `handled`, one key per alert id
holding the decision.
"""

from agent_host import Agent, InvalidInput, Output, Task, Upstream, env, export, http, llm
from agent_host.kv import Store

TOOLS = [
    llm.Tool.new(
        "create_ticket",
        "Opens a ticket for the owning team; for problems that can wait",
        {
            "type": "object",
            "properties": {
                "title": {"type": "string"},
                "severity": {"type": "string", "enum": ["low", "medium", "high"]},
            },
            "required": ["title", "severity"],
        },
    ),
    llm.Tool.new(
        "page_oncall",
        "Pages the on-call engineer now; for outages",
        {
            "type": "object",
            "properties": {"reason": {"type": "string"}},
            "required": ["reason"],
        },
    ),
]

# Which environment variable holds each tool's endpoint.
ENDPOINTS = {"create_ticket": "TICKETS_URL", "page_oncall": "PAGER_URL"}


def read_alert(task: Task) -> dict:
    """The alert's fields: `id`, `alert` and `service` required strings, `summary` optional."""
    alert = task.input_json()
    if not isinstance(alert, dict):
        raise InvalidInput("task input: expected a JSON object with id, alert, service")
    for name in ("id", "alert", "service"):
        if not isinstance(alert.get(name), str):
            raise InvalidInput(f"task input: missing string field `{name}`")
    summary = alert.get("summary", "")
    if not isinstance(summary, str):
        raise InvalidInput("task input: `summary` must be a string")
    return {**alert, "summary": summary}


class Triage(Agent):
    def run(self, task: Task) -> Output:
        alert = read_alert(task)
        handled = Store.open("handled")
        decision = handled.get_json(alert["id"])
        if decision is not None:
            return Output.json({"alert": alert["id"], "duplicate": True, "decision": decision})

        messages = [
            llm.Message.system(
                "You triage production alerts. Call exactly one tool: page_oncall for outages, "
                "create_ticket otherwise."
            ),
            llm.Message.user(f"Alert {alert['alert']} on service {alert['service']}: {alert['summary']}"),
        ]
        answer = llm.complete(messages, TOOLS, llm.Options(max_tokens=256, temperature=0.0))
        if not answer.tool_calls:
            raise Upstream("the model chose no tool")
        call = answer.tool_calls[0]
        arguments = call.arguments_json()
        if call.name not in ENDPOINTS:
            raise Upstream(f"the model called unknown tool `{call.name}`")
        url = env.require(ENDPOINTS[call.name])
        http.post_json(url, {"alert": alert["id"], "service": alert["service"], "arguments": arguments})

        decision = {"tool": call.name, "arguments": arguments}
        handled.set_json(alert["id"], decision)
        return Output.json({"alert": alert["id"], "duplicate": False, "decision": decision})


WitWorld = export(Triage)
