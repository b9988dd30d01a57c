"""Validate and plan a desired-state config."""

from __future__ import annotations

from iscsiha.errors import Report, Severity
from iscsiha.model.load import load_text
from iscsiha.model.types import Config
from iscsiha.plan.cib import previous_drbd
from iscsiha.plan.plan import Plan, make_plan


def validate(text: str, source: str, *, mode: int | None = None) -> tuple[Config, list[Report]]:
    """The validated config and any warnings; raises IscsihaError with every problem.

    ``mode`` is the file's permission bits, to warn when secrets are readable by others.
    """
    config = load_text(text, source)
    warnings = []
    # Every valid config holds secrets (each node's BMC password at least).
    if mode is not None and mode & 0o077:
        warnings.append(Report(
            "secrets-readable", source, oct(mode & 0o777),
            f"mode 0600 (chmod 600 {source})",
            "holds CHAP and BMC secrets but other users may read it",
            Severity.WARNING,
        ))
    return config, warnings


def plan(config: Config, previous_cib: str | None = None) -> Plan:
    """The plan for ``config``, keeping DRBD minors and ports found in ``previous_cib``."""
    # An empty file given as the previous CIB is a mistake, not "no previous plan".
    return make_plan(config, previous_drbd(previous_cib) if previous_cib is not None else None)

