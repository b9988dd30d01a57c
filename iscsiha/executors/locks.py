"""An exclusive lock between processes on one box: what two agents started at once by
Pacemaker (one per target) hold while they change shared kernel state."""

from __future__ import annotations

import fcntl
import os
from collections.abc import Iterator
from contextlib import contextmanager

from iscsiha.errors import IscsihaError


@contextmanager
def exclusive(path: str) -> Iterator[None]:
    """Held until the block ends (or the process dies: the kernel drops flock locks)."""
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with open(path, "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        yield


@contextmanager
def exclusive_or_refuse(path: str, what: str) -> Iterator[None]:
    """Like ``exclusive``, but refused at once when another process holds the lock."""
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with open(path, "w") as lock:
        try:
            fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError as exc:
            raise IscsihaError.single("busy", "lock", path, f"no other {what} running",
                                      "another one holds it") from exc
        yield
