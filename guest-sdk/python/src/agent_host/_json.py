"""JSON text as the Rust SDK writes it (serde_json's `Value`): compact, object
keys sorted, non-ASCII text unescaped, and floats in serde_json's notation
(`1e-7`, not Python's `1e-07`; fixed down to `0.00001`), so an agent's output
and stored values do not depend on the language it is written in."""

import json
import math
from typing import Any, List

_encode_str = json.JSONEncoder(ensure_ascii=False).encode


def dumps(value: Any) -> str:
    """`value` (dicts, lists, tuples, str, int, float, bool, None) as JSON text.

    Raises TypeError for anything else (naming its type), for object keys that
    are not str or int, and for a container that contains itself; ValueError
    for NaN and infinities, which JSON cannot carry.
    """
    out: List[str] = []
    _write(value, out, set())
    return "".join(out)


def _write(value: Any, out: List[str], open_containers: set) -> None:
    if value is None:
        out.append("null")
    elif value is True:
        out.append("true")
    elif value is False:
        out.append("false")
    elif isinstance(value, str):
        out.append(_encode_str(value))
    elif isinstance(value, int):
        out.append(int.__repr__(value))
    elif isinstance(value, float):
        out.append(_float(value))
    elif isinstance(value, (dict, list, tuple)):
        if id(value) in open_containers:
            raise TypeError("circular reference: a container contains itself")
        open_containers.add(id(value))
        if isinstance(value, dict):
            _write_object(value, out, open_containers)
        else:
            out.append("[")
            for i, item in enumerate(value):
                if i:
                    out.append(",")
                _write(item, out, open_containers)
            out.append("]")
        open_containers.discard(id(value))
    else:
        raise TypeError(f"Object of type {type(value).__name__} is not JSON serializable")


def _write_object(value: dict, out: List[str], open_containers: set) -> None:
    items = []
    for key, item in value.items():
        if isinstance(key, bool) or not isinstance(key, (str, int)):
            raise TypeError(f"object keys must be str or int, not {type(key).__name__}")
        items.append((str(key), item))
    items.sort(key=lambda kv: kv[0])
    out.append("{")
    for i, (key, item) in enumerate(items):
        if i:
            out.append(",")
        out.append(_encode_str(key))
        out.append(":")
        _write(item, out, open_containers)
    out.append("}")


def _float(f: float) -> str:
    if not math.isfinite(f):
        raise ValueError(f"Out of range float values are not JSON compliant: {f!r}")
    text = float.__repr__(f)
    mantissa, e, exponent = text.partition("e")
    if not e:
        return text
    power = int(exponent)
    if power == -5:
        # Python switches to exponent notation one power earlier than serde_json.
        sign = "-" if mantissa.startswith("-") else ""
        return f"{sign}0.0000{mantissa.lstrip('-').replace('.', '')}"
    return f"{mantissa}e{'+' if power > 0 else '-'}{abs(power)}"
