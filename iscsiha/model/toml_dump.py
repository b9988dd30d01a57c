"""Write a desired-state document (plain dicts, lists, strings, numbers) as TOML.

The reader is the stdlib's tomllib; this is its small counterpart for the shapes
the desired state uses: top-level tables and arrays of tables, holding scalars,
arrays and inline tables.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any


def dumps(data: Mapping[str, Any]) -> str:
    out: list[str] = []
    scalars = {k: v for k, v in data.items() if not _is_table(v) and not _is_table_array(v)}
    out += [f"{_key(k)} = {_value(v)}" for k, v in scalars.items()]
    for key, value in data.items():
        if _is_table(value):
            out += ["", f"[{_key(key)}]", *(f"{_key(k)} = {_value(v)}" for k, v in value.items())]
        elif _is_table_array(value):
            for item in value:
                out += ["", f"[[{_key(key)}]]",
                        *(f"{_key(k)} = {_value(v)}" for k, v in item.items())]
    return "\n".join(out).lstrip("\n") + "\n"


def _is_table(value: Any) -> bool:
    return isinstance(value, Mapping)


def _is_table_array(value: Any) -> bool:
    return isinstance(value, list) and bool(value) and all(isinstance(v, Mapping) for v in value)


def _key(key: str) -> str:
    # TOML's bare keys are ASCII only; str.isalnum() also passes 'é' and '²'.
    return key if re.fullmatch(r"[A-Za-z0-9_-]+", key) else _string(key)


def _value(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float):
        return repr(value)
    if isinstance(value, str):
        return _string(value)
    if isinstance(value, Mapping):
        return "{ " + ", ".join(f"{_key(k)} = {_value(v)}" for k, v in value.items()) + " }"
    if isinstance(value, list | tuple):
        return "[" + ", ".join(_value(v) for v in value) + "]"
    raise TypeError(f"cannot write {type(value).__name__} as TOML: {value!r}")


_ESCAPES = {'"': '\\"', "\\": "\\\\", "\b": "\\b", "\t": "\\t", "\n": "\\n",
            "\f": "\\f", "\r": "\\r"}


def _string(text: str) -> str:
    """A TOML basic string. Not json.dumps: it writes characters beyond the BMP as
    surrogate pairs (\\ud83d\\ude00), which TOML refuses."""
    out = []
    for c in text:
        if c in _ESCAPES:
            out.append(_ESCAPES[c])
        elif ord(c) < 0x20 or ord(c) == 0x7F:  # TOML allows no raw control characters
            out.append(f"\\u{ord(c):04x}")
        else:
            out.append(c)
    return '"' + "".join(out) + '"'
