"""`hello` in Python: the smallest useful agent. Greets `input.name` (default
"world"), echoes the input back, and exercises structured logging and stdout
capture. Same behaviour and output as examples/hello (Rust)."""

import json
from typing import Tuple

from agent_host import Agent, InvalidInput, Output, Task, export, log


class Hello(Agent):
    def run(self, task: Task) -> Output:
        name, output = greet(task)
        log.record(log.Level.INFO, "greeting", taskId=task.id, name=name)
        print(f"hello agent handled {task.id}")
        return output


def greet(task: Task) -> Tuple[str, Output]:
    """The agent's logic without its host calls: the name greeted and the output."""
    # A task sent without input counts as `{}`.
    text = task.input.strip() or "{}"
    try:
        echo = json.loads(text)
    except ValueError as e:
        raise InvalidInput(f"task input: {e}") from None
    if not isinstance(echo, dict):
        raise InvalidInput(f"task input: expected a JSON object, found {type(echo).__name__}")
    name = echo.get("name")
    if name is None:
        name = "world"
    elif not isinstance(name, str):
        raise InvalidInput(f"task input: `name` must be a string, found {type(name).__name__}")
    output = Output.json({"greeting": f"hello, {name}", "echo": echo, "taskId": task.id})
    return name, output


WitWorld = export(Hello)
