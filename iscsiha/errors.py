"""Problem reports and the one exception type that carries them.

Validation collects every problem before anything is applied; the CLI and the
console format them in one place (iscsiha.cli.report_format).
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


def bug_report(what: str) -> str:
    """The text for an exception no boundary turned into a report: a bug of ours."""
    return (f"iscsiha: this is a bug in iscsiha, not a problem with your input or cluster.\n"
            f"Please report it with the lines below (they hold no secrets unless the\n"
            f"command line did).\ncommand: {what}\n{traceback.format_exc()}")
