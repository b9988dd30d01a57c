"""The desired-state file on this box and its rotating backups."""

from __future__ import annotations

import re
from collections.abc import Callable
from datetime import datetime
from pathlib import Path

from iscsiha.commands import node_steps
from iscsiha.errors import IscsihaError
from iscsiha.executors import files
from iscsiha.executors.files import write_atomic

DESIRED_PATH = Path(node_steps.DESIRED_PATH)  # where apply keeps it on both boxes
BACKUP_DIR = Path("/etc/iscsiha/backup")
BACKUPS_KEPT = 10
SECRET_MODE = 0o600  # the desired state holds CHAP and BMC secrets

_BACKUP = re.compile(r"^desired-(\d{8})-(\d{6})(?:-(\d+))?\.toml$")


def read_text(path: Path) -> str:
    return files.read_text(str(path))


def write_secret(path: Path, text: str) -> None:
    """Write ``text`` atomically, readable by root only."""
    try:
        write_atomic(str(path), text.encode(), SECRET_MODE)
    except OSError as exc:
        raise IscsihaError.single("unwritable-file", "file", str(path),
                                  "a writable path", exc.strerror or str(exc)) from exc


class Backups:
    """Earlier desired states, newest last; only the last ``keep`` are kept."""

    def __init__(self, folder: Path = BACKUP_DIR, keep: int = BACKUPS_KEPT,
                 clock: Callable[[], datetime] = datetime.now) -> None:
        self.folder = folder
        self.keep = keep
        self.clock = clock

    def list(self) -> list[Path]:
        if not self.folder.is_dir():
            return []
        found = []
        for path in self.folder.iterdir():
            m = _BACKUP.match(path.name)
            if m:
                found.append(((m[1], m[2], int(m[3] or 0)), path))
        return [path for _, path in sorted(found)]

    def save(self, text: str) -> Path:
        stamp = self.clock().strftime("%Y%m%d-%H%M%S")
        path = self.folder / f"desired-{stamp}.toml"
        n = 0
        # Two changes within a second must not overwrite each other's backup.
        while path.exists():
            n += 1
            path = self.folder / f"desired-{stamp}-{n}.toml"
        write_secret(path, text)
        for old in self.list()[:-self.keep]:
            old.unlink(missing_ok=True)
        return path
