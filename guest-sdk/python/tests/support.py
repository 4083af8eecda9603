"""Lets the SDK run under the builder's CPython for unit tests: generates the
world's bindings (type stubs whose functions raise NotImplementedError) into
target/guests/python/bindings and puts them and the SDK on sys.path. Tests
replace the few binding functions they exercise with fakes (`patch`).

What needs a real host (the wasi:http resource dance, key-value commit) is
exercised by running the examples through agent-host instead."""

import os
import shutil
import subprocess
import sys
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Iterator

ROOT = Path(__file__).resolve().parents[3]
SDK = ROOT / "guest-sdk" / "python" / "src"
BINDINGS = ROOT / "target" / "guests" / "python" / "bindings"


def _generate_bindings() -> None:
    # Regenerated on every run: it takes a fraction of a second and can never
    # be stale. componentize-py refuses to overwrite files, hence the fresh dir.
    fresh = BINDINGS.with_name(f"bindings.{os.getpid()}")
    shutil.rmtree(fresh, ignore_errors=True)
    subprocess.run(
        [sys.executable, "-c", "import componentize_py, sys; sys.exit(componentize_py.script())",
         "-q", "-d", str(ROOT / "wit"), "-w", "agent", "bindings", str(fresh)],
        check=True,
    )  # fmt: skip
    shutil.rmtree(BINDINGS, ignore_errors=True)
    fresh.rename(BINDINGS)


if str(BINDINGS) not in sys.path:
    _generate_bindings()
    sys.path[:0] = [str(SDK), str(BINDINGS)]


@contextmanager
def patch(obj: Any, name: str, value: Any) -> Iterator[None]:
    """Replaces `obj.name` with `value` for the duration of the block."""
    saved = getattr(obj, name)
    setattr(obj, name, value)
    try:
        yield
    finally:
        setattr(obj, name, saved)
