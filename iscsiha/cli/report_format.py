"""How problem reports look to a person: one place for the CLI and the console."""

from __future__ import annotations

from collections.abc import Iterable

from iscsiha.errors import PARTLY_APPLIED, Report, Secret

_MESSAGES = {
    "missing": "is required",
    "wrong-type": "has the wrong type",
    "unknown-key": "is not a known setting here",
}


def format_report(report: Report) -> str:
    value = report.value.redacted() if isinstance(report.value, Secret) else repr(report.value)
    message = report.message or _MESSAGES.get(report.code, "is not allowed")
    head = f"{report.severity.value}: {report.field}"
    if report.value is not None:
        head += f" = {value}"
    return f"{head}: {message} [{report.code}]\n    allowed: {report.allowed}"


def format_reports(reports: Iterable[Report]) -> str:
    reports = list(reports)
    errors = sum(r.is_error for r in reports)
    lines = [format_report(r) for r in reports]
    if errors:
        partly = any(r.code == PARTLY_APPLIED for r in reports)
        lines.append(f"{errors} problem{'s' if errors != 1 else ''} found; "
                     + ("the change is partly applied." if partly else "nothing was applied."))
    return "\n".join(lines)
