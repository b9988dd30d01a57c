"""Typed JSON between the boxes: one decoder that checks every field against its type.

A message type is a frozen dataclass whose fields use the kinds below (``Annotated``
with a ``Check``), plain ``int``/``float``/``bool``/``str``, ``Literal``, tuples, dicts
and ``X | None``. Decoding refuses unknown and missing keys, wrong types, out-of-range
numbers, control characters and oversized values with a report naming the field, and
never raises anything but IscsihaError: the bytes come from another box.
"""

from __future__ import annotations

import dataclasses
import json
import math
import types
import typing
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import Annotated, Any, Literal, TypeVar

from iscsiha.errors import IscsihaError, Report, Secret, Severity, clip

T = TypeVar("T")

MESSAGE_BYTES_MAX = 16 * 1024 * 1024  # a desired state with 4096 volumes fits many times
ITEMS_MAX = 4096  # list and table entries: more than any cluster has volumes or LUNs
TEXT_MAX = 64 * 1024  # one string (a kernel line, a command, a name)
_REPORT_VALUE_MAX = 300


@dataclass(frozen=True)
class Check:
    """A kind's rule: ``test`` on the decoded base value, ``allowed`` said in reports."""

    allowed: str
    test: Callable[[Any], bool]
    secret: bool = False  # the value may hold secrets: a report gives its length only


def printable(s: str, extra: str = "") -> bool:
    """No control characters (a hostile peer must not drive the admin's terminal)."""
    return all(c.isprintable() or c in extra for c in s)


# Free text (kernel lines, commands run, messages): printable, bounded.
Text = Annotated[str, Check(f"printable text of at most {TEXT_MAX} characters",
                            lambda s: len(s) <= TEXT_MAX and printable(s))]


class Refused(Exception):
    """One bad field while decoding (turned into a report at the boundary)."""

    def __init__(self, where: str, value: object, allowed: str) -> None:
        super().__init__(where)
        self.where, self.value, self.allowed = where, value, allowed


def decode(kind: type[T], data: Any, where: str = "request") -> T:
    """``data`` (parsed JSON) as ``kind``; IscsihaError naming the first bad field."""
    try:
        value: T = _decode(kind, data, where)
    except Refused as bad:
        raise IscsihaError.single("peer-message-refused", bad.where, shown(bad.value),
                                  bad.allowed, "refused: nothing was done") from None
    return value


def loads(raw: bytes | str, where: str = "request") -> Any:
    """Parsed JSON from another box, bounded in size and depth."""
    if len(raw) > MESSAGE_BYTES_MAX:
        raise IscsihaError.single("peer-message-too-large", where, f"{len(raw)} bytes",
                                  f"at most {MESSAGE_BYTES_MAX} bytes")
    try:
        return json.loads(raw)
    except (ValueError, RecursionError) as exc:  # RecursionError: nesting too deep
        raise IscsihaError.single("peer-message-not-json", where, shown(raw),
                                  "one JSON document", f"is not JSON: {exc}"[:200]) from None


def dumps(message: Any) -> str:
    """A message (dataclasses, tuples, dicts, plain values) as JSON."""
    return json.dumps(_plain(message))


def _plain(value: Any) -> Any:
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return {f.name: _plain(getattr(value, f.name)) for f in dataclasses.fields(value)}
    if isinstance(value, (tuple, list)):
        return [_plain(v) for v in value]
    if isinstance(value, Mapping):
        return {str(k): _plain(v) for k, v in value.items()}
    return value


# -- reports over the wire -------------------------------------------------------------

def report_list(reports: Iterable[Report]) -> list[dict[str, str | None]]:
    """Reports as JSON values for the other box; a secret's value never leaves this one."""
    return [{"code": r.code, "field": r.field, "value": shown(r.value), "allowed": r.allowed,
             "message": r.message, "severity": r.severity.value} for r in reports]


def reports_json(reports: Iterable[Report]) -> str:
    return json.dumps({"reports": report_list(reports)})


@dataclass(frozen=True)
class _WireReport:
    code: Text
    field: Text
    value: Text | None
    allowed: Text
    message: Text
    severity: Literal["error", "warning"] = "error"


@dataclass(frozen=True)
class _WireReports:
    reports: tuple[_WireReport, ...]


def reports_from(raw: str) -> list[Report] | None:
    """The reports another box sent as ``{"reports": [...]}``, or None if it is not that."""
    try:
        return reports_of(loads(raw, "reports"))
    except IscsihaError:
        return None


def reports_of(data: Any) -> list[Report]:
    """Reports from a parsed ``{"reports": [...]}``; IscsihaError if it is not that."""
    wire = decode(_WireReports, data, "reports")
    return [Report(r.code, r.field, r.value, r.allowed, r.message, Severity(r.severity))
            for r in wire.reports]


def shown(value: object) -> str | None:
    """A value another box sent or gets, as a report or log may show it: secrets by
    length, control characters escaped, long values cut and marked so."""
    if value is None:
        return None
    if isinstance(value, Secret):
        return value.redacted()
    text = value.decode(errors="replace") if isinstance(value, bytes) else str(value)
    return clip("".join(c if c.isprintable() else repr(c)[1:-1] for c in text),
                _REPORT_VALUE_MAX)


# -- the decoder -----------------------------------------------------------------------

_JSON_NAMES = {str: "a string", int: "an integer", float: "a number", bool: "true or false"}


def _decode(kind: Any, data: Any, where: str) -> Any:
    origin = typing.get_origin(kind)
    if origin is Annotated:
        base, *rules = typing.get_args(kind)
        value = _decode(base, data, where)
        for rule in rules:
            if isinstance(rule, Check) and not rule.test(value):
                raise Refused(where, Secret(value) if rule.secret else data, rule.allowed)
        return value
    if origin is Literal:
        choices = typing.get_args(kind)
        if not isinstance(data, str) or data not in choices:
            raise Refused(where, data, "one of " + ", ".join(map(str, choices)))
        return data
    if origin in (typing.Union, types.UnionType):
        options = typing.get_args(kind)
        if data is None and type(None) in options:
            return None
        (other,) = [o for o in options if o is not type(None)]
        return _decode(other, data, where)
    if origin is tuple:
        return _tuple(kind, data, where)
    if origin is dict:
        key_kind, value_kind = typing.get_args(kind)
        if not isinstance(data, dict) or len(data) > ITEMS_MAX:
            raise Refused(where, data, f"a table of at most {ITEMS_MAX} entries")
        return {_decode(key_kind, k, f"{where} key"): _decode(value_kind, v, f"{where}.{k}")
                for k, v in data.items()}
    if dataclasses.is_dataclass(kind):
        return _dataclass(kind, data, where)
    return _scalar(kind, data, where)


def _tuple(kind: Any, data: Any, where: str) -> tuple[Any, ...]:
    args = typing.get_args(kind)
    if not isinstance(data, list) or len(data) > ITEMS_MAX:
        raise Refused(where, data, f"a list of at most {ITEMS_MAX} items")
    if len(args) == 2 and args[1] is Ellipsis:
        return tuple(_decode(args[0], v, f"{where}[{i}]") for i, v in enumerate(data))
    if len(data) != len(args):
        raise Refused(where, data, f"a list of {len(args)} items")
    return tuple(_decode(a, v, f"{where}[{i}]")
                 for i, (a, v) in enumerate(zip(args, data, strict=True)))


def _dataclass(kind: Any, data: Any, where: str) -> Any:
    fields = {f.name: f for f in dataclasses.fields(kind)}
    if not isinstance(data, dict):
        raise Refused(where, data, "a table with " + ", ".join(fields))
    unknown = sorted(set(data) - set(fields))
    if unknown:
        raise Refused(f"{where}.{unknown[0]}", unknown[0], "one of " + ", ".join(fields))
    hints = typing.get_type_hints(kind, include_extras=True)
    values = {}
    for name, f in fields.items():
        if name not in data:
            if f.default is dataclasses.MISSING:
                raise Refused(f"{where}.{name}", None, "present")
            continue
        values[name] = _decode(hints[name], data[name], f"{where}.{name}")
    return kind(**values)


def _scalar(kind: Any, data: Any, where: str) -> Any:
    if kind is float and isinstance(data, int) and not isinstance(data, bool):
        data = float(data)
    if kind not in _JSON_NAMES:
        raise TypeError(f"no decoder for {kind!r}")  # a message type written wrong: a bug
    if not isinstance(data, kind) or (kind is int and isinstance(data, bool)):
        raise Refused(where, data, _JSON_NAMES[kind])
    if kind is float and not math.isfinite(data):
        raise Refused(where, data, "a finite number")
    return data
