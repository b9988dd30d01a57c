"""Problem reports and the one exception type that carries them.

Validation collects every problem before anything is applied; the CLI and the
console format them in one place (iscsiha.views).
"""

from __future__ import annotations

import traceback
from collections.abc import Iterable
from dataclasses import dataclass
from enum import Enum


class Severity(Enum):
    ERROR = "error"
    WARNING = "warning"


@dataclass(frozen=True)
class Report:
    """One problem: what is wrong (code), where (field), with which value, and what is allowed."""

    code: str
    field: str
    value: object
    allowed: str
    message: str = ""
    severity: Severity = Severity.ERROR

    @property
    def is_error(self) -> bool:
        return self.severity is Severity.ERROR


# The code of the report added when a failure comes after a change already landed.
PARTLY_APPLIED = "partly-applied"


class IscsihaError(Exception):
    """The one error type: a list of reports, at least one of them an error."""

    def __init__(self, reports: Iterable[Report]) -> None:
        self.reports: tuple[Report, ...] = tuple(reports)
        super().__init__("; ".join(f"{r.field}: {r.message or r.code}" for r in self.reports))

    @classmethod
    def single(
        cls, code: str, field: str, value: object, allowed: str, message: str = ""
    ) -> IscsihaError:
        return cls([Report(code, field, value, allowed, message)])


class Secret(str):
    """A string that must never be shown: reports and reprs print its length only."""

    __slots__ = ()

    def __repr__(self) -> str:
        return f"<secret, {len(self)} characters>"

    def redacted(self) -> str:
        return repr(self)


class _WithheldSecret(Secret):
    """A secret that is not even a string (a list, a number): reports show its type."""

    __slots__ = ()

    def __repr__(self) -> str:
        return f"<secret, {str.__str__(self)}>"


def withheld(value: object) -> Secret:
    """What a report may show of a secret's value, whatever its type: type and size only."""
    if isinstance(value, str):
        return Secret(value)
    size = f", {len(value)} items" if isinstance(value, (list, tuple, dict)) else ""
    return _WithheldSecret(f"{type(value).__name__}{size}")


class Shown(str):
    """A value too long or too deeply nested to print whole, summarised for a report."""

    __slots__ = ()

    def __repr__(self) -> str:
        return str.__str__(self)


_SHORT = 200


def clip(text: str, limit: int = 300) -> str:
    """``text``, or its start and how long it was: a report's field or allowed values
    can quote a hostile file's names."""
    return text if len(text) <= limit else f"{text[:limit // 2]}... ({len(text)} characters)"


def bounded(value: object) -> object:
    """``value`` if it prints short, else a summary that says what was left out.

    A report repeats the offending value; a hostile file's 10 MB string or 10 000
    nested lists must not become a 10 MB report or a RecursionError in repr().
    """
    if value is None or isinstance(value, (bool, float, Secret)):
        return value
    if isinstance(value, int):
        if value.bit_length() <= 64:
            return value
        return Shown(f"<an integer of {value.bit_length()} bits>")
    if isinstance(value, str):
        if len(value) <= _SHORT:
            return value
        return Shown(f"{value[:60]!r}... ({len(value)} characters)")
    if isinstance(value, (list, tuple)) and len(value) <= 8 and all(
            isinstance(v, (str, int, float, bool)) and bounded(v) is v for v in value):
        return value
    size = f" of {len(value)} items" if isinstance(value, (list, tuple, dict)) else ""
    return Shown(f"<{type(value).__name__}{size}>")


def bug_report(what: str) -> str:
    """The text for an exception no boundary turned into a report: a bug of ours."""
    return (f"iscsiha: this is a bug in iscsiha, not a problem with your input or cluster.\n"
            f"Please report it with the lines below (they hold no secrets unless the\n"
            f"command line did).\ncommand: {what}\n{traceback.format_exc()}")
