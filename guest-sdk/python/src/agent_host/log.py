"""Structured, levelled log records sent to the host's log stream.

The host tags every record with the agent's name and the invocation id, and
bounds the number and size of records per invocation (records past the bound
are dropped and counted). `print` output is captured too, but without levels
or fields.
"""

from typing import Iterable, Mapping, Optional, Tuple, Union

from wit_world.imports import log as wit

#: Severity of a record, lowest first (WIT `log.level`): TRACE, DEBUG, INFO, WARN, ERROR.
Level = wit.Level

Fields = Union[Mapping[str, object], Iterable[Tuple[str, object]]]


def record(level: Level, message: str, fields: Optional[Fields] = None, **more: object) -> None:
    """Emits one record at `level` with structured key/value fields.

    Fields come from `fields` (a mapping or pairs, for keys that are not
    Python identifiers) and then the keyword arguments; values are sent as
    `str(value)`::

        log.record(log.Level.WARN, "retrying", attempt=2, service="checkout")
    """
    pairs = list(fields.items() if isinstance(fields, Mapping) else fields or ())
    pairs.extend(more.items())
    wit.log(level, message, [(str(k), str(v)) for k, v in pairs])


def debug(message: str, **fields: object) -> None:
    """Emits a `Level.DEBUG` record."""
    record(Level.DEBUG, message, **fields)


def info(message: str, **fields: object) -> None:
    """Emits a `Level.INFO` record."""
    record(Level.INFO, message, **fields)


def warn(message: str, **fields: object) -> None:
    """Emits a `Level.WARN` record."""
    record(Level.WARN, message, **fields)


def error(message: str, **fields: object) -> None:
    """Emits a `Level.ERROR` record."""
    record(Level.ERROR, message, **fields)
