#!/usr/bin/env python3
"""Builds a Python agent into a component with componentize-py.

Usage::

    scripts/build-python-agent.py APP_DIR OUT.wasm

APP_DIR holds the agent's module `app.py` (which assigns `WitWorld =
agent_host.export(...)`) and any modules of its own. The build stages APP_DIR
and the SDK (guest-sdk/python/src) under target/guests/python/.build/ — so no
__pycache__ lands in the source tree — and runs `componentize-py` against
wit/ (world `agent`), writing OUT.wasm atomically.

The build is skipped when the inputs hash to the value recorded in
OUT.wasm.stamp by the last build: APP_DIR, the SDK, wit/, this script and
the componentize-py version. A lock on OUT.wasm.lock lets concurrent callers
(parallel tests) build each component once. Prints `built OUT (...)` or
`up to date OUT`.
"""

import fcntl
import hashlib
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

#: The componentize-py the SDK is written against (module names and value
#: shapes of the generated bindings); scripts/install-tools.sh installs it.
COMPONENTIZE_PY_VERSION = "0.25.1"

ROOT = Path(__file__).resolve().parent.parent
WIT = ROOT / "wit"
SDK = ROOT / "guest-sdk" / "python" / "src"
WORLD = "agent"
APP_MODULE = "app"

# Not part of an agent's code: the manifest, build leftovers, editor files.
IGNORED = shutil.ignore_patterns("__pycache__", "*.pyc", "*.wasm", "*.yaml", "*.yml", ".*")


def fail(message: str) -> "NoReturn":  # noqa: F821
    print(f"build-python-agent: {message}", file=sys.stderr)
    sys.exit(1)


def componentize_py_version() -> str:
    try:
        import componentize_py  # noqa: F401
    except ImportError:
        fail(
            f"componentize-py is not installed for {sys.executable}: run scripts/install-tools.sh "
            f"(or pip install componentize-py=={COMPONENTIZE_PY_VERSION})"
        )
    from importlib.metadata import version

    found = version("componentize-py")
    if found != COMPONENTIZE_PY_VERSION:
        fail(
            f"componentize-py {found} is installed, the SDK needs {COMPONENTIZE_PY_VERSION}: "
            "run scripts/install-tools.sh"
        )
    return found


def stage(src: Path, dest: Path) -> None:
    if dest.exists():
        shutil.rmtree(dest)
    shutil.copytree(src, dest, ignore=IGNORED)


def tree_hash(h: "hashlib._Hash", label: str, root: Path) -> None:
    """Feeds every file under `root` (relative path and contents) into `h`, in a stable order."""
    for path in sorted(p for p in root.rglob("*") if p.is_file()):
        h.update(f"{label}/{path.relative_to(root).as_posix()}\0".encode())
        h.update(hashlib.sha256(path.read_bytes()).digest())


def main() -> None:
    if len(sys.argv) != 3:
        fail("usage: build-python-agent.py APP_DIR OUT.wasm")
    app_dir, out = Path(sys.argv[1]).resolve(), Path(sys.argv[2]).resolve()
    if not (app_dir / f"{APP_MODULE}.py").is_file():
        fail(f"{app_dir}/{APP_MODULE}.py not found: the agent's module must be {APP_MODULE}.py")
    version = componentize_py_version()

    out.parent.mkdir(parents=True, exist_ok=True)
    # One staging dir per output path, so builds of different outputs never share one.
    key = hashlib.sha256(str(out).encode()).hexdigest()[:12]
    work = ROOT / "target" / "guests" / "python" / ".build" / f"{out.stem}-{key}"
    work.mkdir(parents=True, exist_ok=True)
    stamp = out.with_name(out.name + ".stamp")
    with open(out.with_name(out.name + ".lock"), "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        # Hash what is staged, so the hash covers exactly what goes into the build.
        stage(app_dir, work / "app")
        stage(SDK, work / "sdk")
        h = hashlib.sha256(f"componentize-py {version}\0".encode())
        h.update(Path(__file__).read_bytes())
        for label, root in (("app", work / "app"), ("sdk", work / "sdk"), ("wit", WIT)):
            tree_hash(h, label, root)
        digest = h.hexdigest()
        if out.is_file() and stamp.is_file() and stamp.read_text().strip() == digest:
            print(f"up to date {out}")
            return

        tmp = out.with_name(out.name + ".tmp")
        started = time.monotonic()
        cmd = [
            sys.executable, "-c", "import componentize_py, sys; sys.exit(componentize_py.script())",
            "-q", "-d", str(WIT), "-w", WORLD,
            "componentize", APP_MODULE,
            "-p", str(work / "app"), "-p", str(work / "sdk"),
            "-o", str(tmp),
        ]  # fmt: skip
        # Only the staged dirs: not the builder's site-packages or virtualenv.
        env = {k: v for k, v in os.environ.items() if k not in ("VIRTUAL_ENV", "PYTHONPATH")}
        run = subprocess.run(cmd, env=env, cwd=work)
        if run.returncode != 0:
            tmp.unlink(missing_ok=True)
            fail(f"componentize-py failed on {app_dir} (exit {run.returncode}); see above")
        tmp.replace(out)
        stamp.write_text(digest + "\n")
        size = out.stat().st_size
        print(f"built {out} ({size / 2**20:.1f} MiB in {time.monotonic() - started:.1f} s)")


if __name__ == "__main__":
    main()
