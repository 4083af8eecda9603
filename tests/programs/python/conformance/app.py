"""A Python agent for the language-parameterised conformance suite: one
component whose input's `op` selects the behaviour to exercise, so the suite
builds one Python component instead of one per behaviour (each build is
~18 MB and several seconds).

Ops (input `{"op": ..., ...}`), and what the host must make of them:

* `echo`: outputs the input verbatim.
* `env` `{names}`: each name's value or null; only declared variables exist.
* `fs` `{dir, file, escape}`: lists `dir`, reads `dir/file`, tries to write
  `dir/new.txt` and to read `escape` (a path outside the grant); every
  failure is reported as text in the output.
* `http` `{method, url, body?}`: one request; status and body length, or the
  typed error (a URL outside the grant is `capability-denied`, unsent).
* `socket` `{port}`: a raw TCP connect to 127.0.0.1, which the host denies.
* `log`: one structured record and one stdout line.
* `spin`: loops forever (fuel or timeout).
* `alloc`: allocates 1 MiB blocks forever (memory limit).
* `big` `{n}`: an output of n+2 bytes (output limit).
* `kv` `{fail?}`: increments counter `n` and sets `last` in bucket `state`,
  then raises `Upstream` when `fail` (nothing may be committed).
"""

import os
import socket

from agent_host import Agent, Output, Task, Upstream, env, export, http, log
from agent_host.kv import Store


def fs(req: dict) -> dict:
    out = {}
    try:
        out["listdir"] = sorted(os.listdir(req["dir"]))
        with open(os.path.join(req["dir"], req["file"])) as f:
            out["read"] = f.read()
    except OSError as e:
        out["read_error"] = repr(e)
    try:
        with open(os.path.join(req["dir"], "new.txt"), "w") as f:
            f.write("x")
        out["write"] = "ok"
    except OSError as e:
        out["write_error"] = repr(e)
    try:
        with open(req["escape"]) as f:
            out["escape"] = f.read()
    except OSError as e:
        out["escape_error"] = repr(e)
    return out


def connect(port: int) -> str:
    try:
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
            s.connect(("127.0.0.1", port))
        return "connected"
    except OSError as e:
        return repr(e)


def spin() -> None:
    while True:
        pass


def alloc() -> None:
    hog = []
    while True:
        hog.append(bytearray(1 << 20))


def kv(task: Task, fail: bool) -> Output:
    state = Store.open("state")
    n = state.increment("n")
    state.set_json("last", {"id": task.id})
    if fail:
        raise Upstream(f"failing after incrementing n to {n}")
    return Output.json({"n": n, "counter": state.counter("n"), "keys": state.keys()})


class Conformance(Agent):
    def run(self, task: Task) -> Output:
        req = task.input_json()
        op = req.get("op")
        if op == "echo":
            return Output.raw(task.input)
        if op == "env":
            return Output.json({name: env.var(name) for name in req["names"]})
        if op == "fs":
            return Output.json(fs(req))
        if op == "http":
            r = http.request(req["method"], req["url"], body=req.get("body"))
            return Output.json({"status": r.status, "bodyBytes": len(r.body)})
        if op == "socket":
            return Output.json(connect(req["port"]))
        if op == "log":
            log.record(log.Level.WARN, "conformance", {"task-id": task.id}, op=op)
            print(f"conformance stdout {task.id}")
            return Output.json("logged")
        if op == "spin":
            spin()
        if op == "alloc":
            alloc()
        if op == "big":
            return Output.text("x" * req["n"])
        if op == "kv":
            return kv(task, bool(req.get("fail")))
        raise ValueError(f"unknown op {op!r}")


WitWorld = export(Conformance)
