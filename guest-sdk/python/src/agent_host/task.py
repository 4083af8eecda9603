"""The values exchanged with the host on every invocation, with helpers for
JSON input and output."""

import json
from dataclasses import dataclass, field
from typing import Any, List, Optional, Tuple

from ._json import dumps
from .errors import Internal, InvalidInput


@dataclass
class Task:
    """One unit of work handed to the agent (WIT `types.task`)."""

    #: Invocation id assigned by the host, present in every log line and audit
    #: record the invocation produces.
    id: str
    #: The task input: a JSON document as text, as the caller sent it.
    input: str
    #: Caller-supplied key/value pairs, never interpreted by the host.
    metadata: List[Tuple[str, str]] = field(default_factory=list)

    def input_json(self) -> Any:
        """The input parsed as JSON.

        Raises `InvalidInput` carrying the parser's message (line and column)
        when the input is not JSON.
        """
        try:
            return json.loads(self.input)
        except ValueError as e:
            raise InvalidInput(f"task input: {e}") from None

    def metadata_value(self, key: str) -> Optional[str]:
        """The value of the first metadata entry named `key`, if the caller sent one."""
        return next((v for k, v in self.metadata if k == key), None)


@dataclass
class Output:
    """What a successful run returns (WIT `types.output`): a JSON document as text.
    The host enforces the manifest's `spec.limits.maxOutputBytes` on it."""

    data: str

    @classmethod
    def json(cls, value: Any) -> "Output":
        """An output holding `value` serialised as JSON: compact, keys sorted, floats
        in serde_json's notation, byte for byte what the Rust SDK writes.

        Raises `Internal` if `value` is not JSON-serialisable.
        """
        try:
            return cls(dumps(value))
        except (TypeError, ValueError) as e:
            raise Internal(f"cannot serialise output: {e}") from None

    @classmethod
    def text(cls, text: str) -> "Output":
        """An output holding `text` as a JSON string (quoted and escaped)."""
        return cls(json.dumps(text, ensure_ascii=False))

    @classmethod
    def raw(cls, data: str) -> "Output":
        """An output whose data is `data` verbatim; the host expects a JSON document."""
        return cls(data)
