"""Files written so a power cut never leaves an empty or half-written one behind."""

from __future__ import annotations

import contextlib
import os

from iscsiha.errors import IscsihaError


def write_all(fd: int, data: bytes) -> None:
    """All of ``data`` to ``fd`` (os.write may take only part of it)."""
    view = memoryview(data)
    while view:
        view = view[os.write(fd, view):]


def write_atomic(path: str, data: bytes, mode: int = 0o644) -> None:
    """Write via a temporary file created with ``mode`` (never wider), fsync, rename,
    fsync the folder."""
    folder = os.path.dirname(path) or "."
    os.makedirs(folder, exist_ok=True)
    tmp = f"{path}.iscsiha-tmp"
    # Never through a link planted at the temporary name (rename replaces a link at
    # ``path`` itself instead of following it).
    with contextlib.suppress(FileNotFoundError):
        os.unlink(tmp)
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, mode)
    try:
        os.fchmod(fd, mode)
        write_all(fd, data)
        os.fsync(fd)
    finally:
        os.close(fd)
    os.replace(tmp, path)
    dfd = os.open(folder, os.O_RDONLY)
    try:
        os.fsync(dfd)
    finally:
        os.close(dfd)


def write_if_changed(path: str, data: bytes, mode: int = 0o644) -> bool:
    """write_atomic unless the file already holds ``data`` with ``mode``; whether it wrote."""
    try:
        same = read(path) == data and os.stat(path).st_mode & 0o7777 == mode
    except FileNotFoundError:
        same = False
    if not same:
        write_atomic(path, data, mode)
    return not same


def read_text(path: str) -> str:
    """A UTF-8 text file's content; an error names the file and why it cannot be read."""
    try:
        with open(path, encoding="utf-8") as f:
            return f.read()
    except OSError as exc:
        raise IscsihaError.single("unreadable-file", "file", path,
                                  "a readable UTF-8 file", exc.strerror or str(exc)) from exc
    except UnicodeDecodeError as exc:
        raise IscsihaError.single("unreadable-file", "file", path,
                                  "a readable UTF-8 file", "is not UTF-8 text") from exc


def read(path: str) -> bytes | None:
    """A file's content; None when it is not there."""
    try:
        with open(path, "rb") as f:
            return f.read()
    except FileNotFoundError:
        return None


def remove(path: str) -> bool:
    """Remove a file; False when it was not there."""
    try:
        os.remove(path)
    except FileNotFoundError:
        return False
    return True
