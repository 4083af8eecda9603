"""Key-value state that outlives the invocation (`spec.capabilities.keyValue`).

The host scopes every key to the agent (and its namespace) and makes an
invocation's writes one transaction: they become visible to later invocations
only if `run` returns an output, and a trap, an error, or a timeout leaves
nothing behind. Within an invocation, reads see its own writes. Values are
bytes; `Store.get_json`/`Store.set_json` store JSON, and `Store.increment`
keeps a counter in the format the host uses (an 8-byte little-endian u64,
read back by `Store.counter`)::

    from agent_host.kv import Store

    handled = Store.open("handled")  # not granted -> kv.Denied
    previous = handled.get_json("alert-42")
    if previous is None:
        handled.set_json("alert-42", {"tool": "create_ticket"})
    seen = handled.increment("alerts-seen")
    assert handled.counter("alerts-seen") == seen
"""

import json
from typing import Any, Callable, List, Optional

from componentize_py_types import Err
from wit_world.imports import atomics, store

from .errors import AgentError, CapabilityDenied, Internal, Upstream
from ._json import dumps

#: Counters are unsigned 64-bit; the host wraps on overflow.
U64_MAX = 2**64 - 1


class Error(AgentError):
    """Base of every key-value failure. Denials are `CapabilityDenied`, stored
    data that does not fit is `Internal`, what the host refused or failed is
    `Upstream`."""

    def __init__(self, message: str, bucket: str):
        super().__init__(message)
        self.bucket = bucket


class Denied(Error, CapabilityDenied):
    """The host refused the bucket (`access-denied`): no `spec.capabilities.keyValue`
    grant, or the bucket is not in its `buckets` list."""

    def __init__(self, bucket: str):
        super().__init__(
            f"key-value bucket `{bucket}` denied by the host: grant it in "
            "spec.capabilities.keyValue (and its buckets list)",
            bucket,
        )


class NoSuchStore(Error, CapabilityDenied):
    """The host does not know the bucket (`no-such-store`)."""

    def __init__(self, bucket: str):
        super().__init__(f"key-value bucket `{bucket}` does not exist on this host", bucket)


class HostError(Error, Upstream):
    """The host refused or failed the operation (`other`): the `maxBytes` quota,
    a key too long, too many keys in one invocation, a backend failure. The
    message is the host's."""

    def __init__(self, bucket: str, detail: str):
        super().__init__(f"key-value bucket `{bucket}`: {detail}", bucket)
        self.detail = detail


class JsonError(Error, Internal):
    """A value could not be encoded as JSON, or the stored bytes are not JSON."""

    def __init__(self, bucket: str, key: str, detail: str):
        super().__init__(f"key-value bucket `{bucket}`, key `{key}`: {detail}", bucket)
        self.key = key


class NotACounter(Error, Internal):
    """The key holds a value that is not a counter (8 bytes, little-endian u64)."""

    def __init__(self, bucket: str, key: str, length: int):
        super().__init__(
            f"key-value bucket `{bucket}`, key `{key}`: holds {length} bytes, "
            "not an 8-byte little-endian u64 counter",
            bucket,
        )
        self.key = key
        self.length = length


def host_error(bucket: str, e: store.Error) -> Error:
    """The one mapping from `wasi:keyvalue` errors to `Error`."""
    if isinstance(e, store.Error_AccessDenied):
        return Denied(bucket)
    if isinstance(e, store.Error_NoSuchStore):
        return NoSuchStore(bucket)
    return HostError(bucket, e.value)


class Store:
    """An open bucket of the agent's key-value state. Use `with` (or `close`)
    to release it early; it is released with the object otherwise."""

    def __init__(self, bucket: store.Bucket, name: str):
        self._bucket = bucket
        self.name = name

    @classmethod
    def open(cls, bucket: str) -> "Store":
        """Opens `bucket`; raises `Denied` when the manifest grants no key-value
        state or does not list the bucket."""
        try:
            return cls(store.open(bucket), bucket)
        except Err as e:
            raise host_error(bucket, e.value) from None

    def close(self) -> None:
        """Releases the bucket handle."""
        self._bucket.__exit__(None, None, None)

    def __enter__(self) -> "Store":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _call(self, op: Callable[..., Any], *args: Any) -> Any:
        try:
            return op(*args)
        except Err as e:
            raise host_error(self.name, e.value) from None

    def get(self, key: str) -> Optional[bytes]:
        """The bytes at `key`, or None if it is absent."""
        return self._call(self._bucket.get, key)

    def set(self, key: str, value: bytes) -> None:
        """Stores `value` at `key`, replacing any previous value."""
        self._call(self._bucket.set, key, bytes(value))

    def delete(self, key: str) -> None:
        """Removes `key`; removing an absent key is not an error."""
        self._call(self._bucket.delete, key)

    def exists(self, key: str) -> bool:
        """Whether `key` holds a value."""
        return self._call(self._bucket.exists, key)

    def keys(self) -> List[str]:
        """Every key in the bucket, following the host's pages to the end."""
        return all_pages(self.name, lambda cursor: self._call(self._bucket.list_keys, cursor))

    def get_json(self, key: str) -> Any:
        """The JSON value at `key`, or None if it is absent; raises `JsonError`
        if the stored bytes are not JSON."""
        data = self.get(key)
        if data is None:
            return None
        try:
            return json.loads(data)
        except ValueError as e:
            raise JsonError(self.name, key, f"stored value is not JSON: {e}") from None

    def set_json(self, key: str, value: Any) -> None:
        """Stores `value` serialised as JSON at `key`."""
        try:
            data = dumps(value).encode("utf-8")
        except (TypeError, ValueError) as e:
            raise JsonError(self.name, key, f"cannot encode value as JSON: {e}") from None
        self.set(key, data)

    def increment(self, key: str, delta: int = 1) -> int:
        """Adds `delta` (0..2**64-1) to the counter at `key` (an absent key
        counts as 0) and returns the value this invocation sees: the counter as
        it first looked at it plus its own increments so far. Increments
        commute: invocations that only increment a key never conflict, each
        delta is added at commit to whatever the counter holds then. A key
        holding anything but a counter raises `HostError`."""
        if not 0 <= delta <= U64_MAX:
            raise ValueError(f"counter delta {delta} is outside 0..2**64-1")
        return self._call(atomics.increment, self._bucket, key, delta)

    def counter(self, key: str) -> int:
        """The counter at `key` as `increment` left it (an absent key is 0);
        raises `NotACounter` if the key holds something else."""
        data = self.get(key)
        if data is None:
            return 0
        if len(data) != 8:
            raise NotACounter(self.name, key, len(data))
        return int.from_bytes(data, "little")


def all_pages(bucket: str, list_keys: Callable[[Optional[int]], store.KeyResponse]) -> List[str]:
    """Concatenates the pages `list_keys` returns from the first (None) cursor
    on. A cursor that does not move forward is an error, not an endless loop."""
    keys: List[str] = []
    cursor: Optional[int] = None
    while True:
        page = list_keys(cursor)
        keys.extend(page.keys)
        if page.cursor is None:
            return keys
        if cursor is not None and page.cursor <= cursor:
            raise HostError(
                bucket,
                f"list-keys returned cursor {page.cursor}, which does not advance past {cursor}",
            )
        cursor = page.cursor
