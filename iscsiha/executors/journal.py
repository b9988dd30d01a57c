"""This box's journal, as the phases of a failover (iscsiha.timeline).

Bounded: only the identifiers the patterns read, this boot, at most ``LINES_MAX``
entries and ``SINCE_MAX`` seconds back, and journalctl given ``TIMEOUT`` seconds.
"""

from __future__ import annotations

from typing import Protocol

from iscsiha.executors.runner import CommandResult
from iscsiha.timeline import SOURCES, Event, events_from_journal


class RunsCommands(Protocol):
    """iscsiha.executors.runner.Runner, as far as this module uses it."""

    def run(self, argv: list[str], *, input: str | None = None, check: bool = True,
            timeout: float | None = 60.0) -> CommandResult: ...


JOURNALCTL = "/usr/bin/journalctl"
LINES_MAX = 20_000  # the newest entries of those sources; a few MB of JSON at most
SINCE_MAX = 30 * 24 * 3600.0  # a month: older failovers are history, not "the last one"
TIMEOUT = 20.0  # a journal on a dying disk must not hold `status` up


def argv(now: float) -> list[str]:
    """journalctl's arguments: JSON, only the fields and sources the patterns read."""
    return [JOURNALCTL, "-o", "json", "--no-pager", "--boot", f"--since=@{int(now - SINCE_MAX)}",
            f"--lines={LINES_MAX}", "--output-fields=MESSAGE,SYSLOG_IDENTIFIER",
            # Matches on one field are ORed by journalctl.
            *(f"SYSLOG_IDENTIFIER={source}" for source in SOURCES)]


def events(runner: RunsCommands, node: str, now: float) -> list[Event]:
    """The phases this box's journal holds, on its wall clock; IscsihaError when
    journalctl cannot be run or fails."""
    return events_from_journal(node, runner.run(argv(now), timeout=TIMEOUT).stdout)
