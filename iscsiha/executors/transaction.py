"""Changes to a box that can be undone: files, folders made by tools, started services.

Bootstrap writes a dozen files and starts services; when a later step fails the
box must be as it was (docs/bootstrap.md). Each change records how to take it
back before it is made, and ``undo`` takes them back newest first. All paths are
absolute paths of the box, placed under ``root`` (``/`` on a box, a temporary
folder in tests).
"""

from __future__ import annotations

import functools
import os
import shutil
from collections.abc import Callable
from pathlib import Path

from iscsiha.errors import IscsihaError, Report
from iscsiha.executors import files

ASIDE = ".iscsiha-before"


class Transaction:
    def __init__(self, root: Path) -> None:
        self.root = root
        self._undo: list[tuple[str, Callable[[], None]]] = []
        self._commit: list[Callable[[], None]] = []

    def path(self, box_path: str) -> str:
        return str(self.root / box_path.lstrip("/"))

    def write(self, box_path: str, data: bytes, mode: int) -> None:
        """Write a file atomically; undo puts back what was there (or nothing)."""
        real = self.path(box_path)
        self.makedirs(os.path.dirname(box_path))
        try:
            before = files.read(real)
            old_mode = os.stat(real).st_mode & 0o7777 if before is not None else 0
        except OSError as exc:  # a folder where the file belongs, a file it may not read
            raise _failed(box_path, exc) from exc

        def restore() -> None:
            if before is None:
                files.remove(real)
            else:
                files.write_atomic(real, before, old_mode)

        self._undo.append((box_path, restore))
        try:
            files.write_atomic(real, data, mode)
        except OSError as exc:
            raise _failed(box_path, exc) from exc

    def makedirs(self, box_path: str, mode: int = 0o755) -> None:
        """Make a folder and its missing parents; undo removes those it made."""
        missing = []
        here = box_path.rstrip("/") or "/"
        while here != "/" and not os.path.isdir(self.path(here)):
            missing.append(here)
            here = os.path.dirname(here)
        for folder in reversed(missing):
            real = self.path(folder)
            self._undo.append((folder, functools.partial(_rmdir, real)))
            try:
                os.mkdir(real, mode)
                os.chmod(real, mode)  # mkdir's mode is cut by the umask
            except OSError as exc:
                raise _failed(folder, exc) from exc

    def fresh_tree(self, box_path: str) -> None:
        """A folder a tool is about to fill: an old one is set aside until commit."""
        real = self.path(box_path)
        aside = real + ASIDE
        if os.path.lexists(real):
            shutil.rmtree(aside, ignore_errors=True)
            try:
                os.rename(real, aside)
            except OSError as exc:
                raise _failed(box_path, exc) from exc

            def back() -> None:
                shutil.rmtree(real, ignore_errors=True)
                os.rename(aside, real)

            self._undo.append((box_path, back))
            self._commit.append(lambda: shutil.rmtree(aside, ignore_errors=True))
        else:
            self._undo.append((box_path, lambda: shutil.rmtree(real, ignore_errors=True)))

    def new_files_in(self, box_path: str) -> None:
        """Files a service will make in a folder (its state): undo removes the new ones."""
        real = self.path(box_path)
        before = set(os.listdir(real)) if os.path.isdir(real) else set()

        def drop() -> None:
            if os.path.isdir(real):
                for name in set(os.listdir(real)) - before:
                    target = os.path.join(real, name)
                    if os.path.isdir(target) and not os.path.islink(target):
                        shutil.rmtree(target, ignore_errors=True)
                    else:
                        files.remove(target)

        self._undo.append((box_path, drop))

    def on_undo(self, what: str, action: Callable[[], None]) -> None:
        self._undo.append((what, action))

    def commit(self) -> None:
        for action in self._commit:
            action()
        self._undo.clear()
        self._commit.clear()

    def undo(self) -> list[Report]:
        """Take every change back, newest first; what could not be is reported."""
        problems = []
        for what, action in reversed(self._undo):
            try:
                action()
            except (OSError, IscsihaError) as exc:
                detail = (exc.reports[0].message or exc.reports[0].code
                          if isinstance(exc, IscsihaError) else exc.strerror or str(exc))
                problems.append(Report("undo-failed", "undo", what,
                                       "put back as it was before", detail))
        self._undo.clear()
        self._commit.clear()
        return problems


def _failed(box_path: str, exc: OSError) -> IscsihaError:
    return IscsihaError.single("write-failed", "path", box_path, "a path this box can write",
                               exc.strerror or str(exc))


def _rmdir(path: str) -> None:
    """Remove a folder this transaction made, if nothing else put files in it."""
    try:
        os.rmdir(path)
    except FileNotFoundError:
        pass
    except OSError:
        if os.listdir(path):
            return
        raise
