"""A point in time as an admin gives it for "since" (a support bundle's journal),
checked and turned into what journalctl's --since reads (systemd.time(7))."""

from __future__ import annotations

import datetime
import re

SINCE_ALLOWED = ("YYYY-MM-DD, 'YYYY-MM-DD HH:MM[:SS]', today, yesterday, or a time back "
                 "from now: a number and s, min, h, d or w (30min, 6h, 2d)")
_AGO = re.compile(r"([1-9][0-9]{0,5})(s|min|h|d|w)", re.A)
_DATE = re.compile(r"[0-9]{4}-[0-9]{2}-[0-9]{2}(?: [0-9]{2}:[0-9]{2}(?::[0-9]{2})?)?", re.A)


def journal_since(value: str) -> str | None:
    """journalctl's form of ``value`` ("6h" -> "-6h"), or None when it is none of
    SINCE_ALLOWED. Never option-like, and a real date: journalctl's own error for a
    bad one would arrive only after everything else was collected."""
    if value in ("today", "yesterday"):
        return value
    if _AGO.fullmatch(value):
        return f"-{value}"
    if _DATE.fullmatch(value):
        try:
            datetime.datetime.fromisoformat(value)
        except ValueError:
            return None
        return value
    return None
