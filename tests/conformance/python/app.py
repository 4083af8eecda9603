"""The conformance agent in Python: the behaviours of
tests/conformance/PROTOCOL.md, which every guest language implements alike
and tests/e2e/conformance.rs runs through the host."""

from agent_host import Agent, Internal, InvalidInput, Output, Task, env, export, http, log
from agent_host.kv import Store


def outcome(action, ok):
    try:
        return ok(action())
    except Exception as e:  # every failure is reported, as the Rust agent does
        return {"ok": False, "error": str(e)}


def read(path):
    with open(path) as f:
        return f.read()


def write(path, text):
    with open(path, "w") as f:
        f.write(text)


class Conformance(Agent):
    def run(self, task: Task) -> Output:
        req = task.input_json()
        op = req.get("op")
        if op == "echo":
            return Output.json({"echo": req.get("value")})
        if op == "env":
            return Output.json({"env": {name: env.var(name) for name in req.get("names", [])}})
        if op == "read":
            return Output.json(outcome(lambda: read(req["path"]), lambda t: {"ok": True, "text": t}))
        if op == "write":
            return Output.json(outcome(lambda: write(req["path"], req["text"]), lambda _: {"ok": True}))
        if op == "http":
            return Output.json(outcome(
                lambda: http.request("GET", req["url"]),
                lambda r: {"ok": True, "status": r.status, "body": r.text()},
            ))
        if op == "log":
            log.info(req.get("message", ""), op="log")
            return Output.json({"logged": True})
        if op == "spin":
            n = 0
            while True:
                n += 1
        if op == "alloc":
            kept = []
            while True:
                kept.append(bytearray(b"\x01" * (1 << 20)))
        if op == "output":
            return Output.json({"data": "x" * int(req.get("bytes", 0))})
        if op == "kv":
            count = Store.open("conformance").increment(req["key"], 1)
            if req.get("fail"):
                raise Internal("rolled back")
            return Output.json({"count": count})
        raise InvalidInput(f"unknown op {op!r}")


WitWorld = export(Conformance)
