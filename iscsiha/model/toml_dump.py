"""Write a desired-state document (plain dicts, lists, strings, numbers) as TOML.

The reader is the stdlib's tomllib; this is its small counterpart for the shapes
the desired state uses: top-level tables and arrays of tables, holding scalars,
arrays and inline tables.
"""

from __future__ import annotations

import json
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
    return key if re.fullmatch(r"[A-Za-z0-9_-]+", key) else json.dumps(key)


def _value(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float):
        return repr(value)
    if isinstance(value, str):
        return json.dumps(value)  # a JSON string is a valid TOML basic string
    if isinstance(value, Mapping):
        return "{ " + ", ".join(f"{_key(k)} = {_value(v)}" for k, v in value.items()) + " }"
    if isinstance(value, list | tuple):
        return "[" + ", ".join(_value(v) for v in value) + "]"
    raise TypeError(f"cannot write {type(value).__name__} as TOML: {value!r}")
