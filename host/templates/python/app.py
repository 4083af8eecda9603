"""{{name}}: greets `input.name`. Start here: read the task input, reach what
the manifest grants through the SDK (`http`, `kv`, `llm`, `tools`, `env`,
`log`), return JSON."""

from agent_host import Agent, Output, Task, export, log


class Main(Agent):
    def run(self, task: Task) -> Output:
        name = task.input_json().get("name") or "world"
        log.info(f"greeting {name}")
        return Output.json({"greeting": f"hello, {name}"})


WitWorld = export(Main)
