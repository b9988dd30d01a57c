"""The audit log on this box: /var/log/iscsiha/audit.jsonl (0600, its folder 0700), one
record a line, appended in one write and fsynced; rotated by size (audit.jsonl.1 is
the newest old file, the last KEEP kept).

Appends and rotations by concurrent processes (the CLI, the console, a peer's copy)
hold one flock, so a rotation never loses or splits a line another process writes.
"""

from __future__ import annotations

import fcntl
import os
from collections.abc import Iterator
from contextlib import contextmanager

AUDIT_DIR = "/var/log/iscsiha"
AUDIT_NAME = "audit.jsonl"
MAX_BYTES = 5 * 1024 * 1024
KEEP = 5  # rotated files kept besides the current one
DIR_MODE, FILE_MODE = 0o700, 0o600


class AuditLog:
    def __init__(self, folder: str | None = None, max_bytes: int = MAX_BYTES,
                 keep: int = KEEP) -> None:
        self.folder = folder or AUDIT_DIR
        self.max_bytes = max_bytes
        self.keep = keep

    @property
    def path(self) -> str:
        return os.path.join(self.folder, AUDIT_NAME)

    def append(self, line: bytes) -> None:
        """One line, whole or not at all as far as a reader can tell (raises OSError)."""
        with self._locked():
            try:
                size = os.stat(self.path).st_size
            except FileNotFoundError:
                size = 0
            if size and size + len(line) > self.max_bytes:
                self._rotate()
            fd = os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT | os.O_CLOEXEC
                         | os.O_NOFOLLOW, FILE_MODE)
            try:
                os.fchmod(fd, FILE_MODE)
                written = os.write(fd, line)
                if written != len(line):
                    raise OSError(f"short write to {self.path}: {written} of {len(line)} "
                                  "bytes")
                os.fsync(fd)
            finally:
                os.close(fd)

    def files(self) -> list[str]:
        """The log's files, oldest first (raises PermissionError for a folder this user
        cannot read, rather than showing an empty log)."""
        if os.path.isdir(self.folder) and not os.access(self.folder, os.R_OK | os.X_OK):
            raise PermissionError(13, "Permission denied (the audit log is root's)",
                                  self.folder)
        rotated = [f"{self.path}.{n}" for n in range(self.keep, 0, -1)]
        return [p for p in (*rotated, self.path) if os.path.exists(p)]

    def lines(self) -> Iterator[bytes]:
        """Every line, oldest first."""
        for path in self.files():
            try:
                with open(path, "rb") as f:
                    yield from f
            except FileNotFoundError:  # rotated away while reading
                continue

    def _rotate(self) -> None:
        for n in range(self.keep - 1, 0, -1):
            older = f"{self.path}.{n}"
            if os.path.exists(older):
                os.replace(older, f"{self.path}.{n + 1}")
        os.replace(self.path, f"{self.path}.1")

    @contextmanager
    def _locked(self) -> Iterator[None]:
        os.makedirs(self.folder, mode=DIR_MODE, exist_ok=True)
        os.chmod(self.folder, DIR_MODE)
        fd = os.open(os.path.join(self.folder, ".lock"),
                     os.O_WRONLY | os.O_CREAT | os.O_CLOEXEC | os.O_NOFOLLOW, FILE_MODE)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)
            yield
        finally:
            os.close(fd)
