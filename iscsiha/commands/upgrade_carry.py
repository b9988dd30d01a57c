"""Carry this box's state (iscsiha.model.box_state) from its running root into a new
root, so the new root boots as the same cluster member (docs/upgrade.md).

Three steps, and nothing is written before the first has found no problem:

1. plan: every entry of the table is read from the old root (a missing one is
   skipped: a fresh box has no cluster). Symlinks are carried as symlinks, never
   followed; a fifo, socket or device is refused; so is a folder on either side that
   is a symlink (writing through it would land outside the new root). Each owner is
   mapped by name: the id the owner's name has in the NEW root's passwd and group;
   a name the new root lacks is refused, naming file and owner.
2. write: every file under a temporary name beside its place (made with the old
   file's mode, owner and times), the accounts merged, the record
   var/lib/iscsiha/carried.json. A failure here removes the temporaries and the
   folders made for them: the new root is as the image had it.
3. rename each into place, then set the carried folders' modes, owners and times.

The caller arms the slot only after all three held, so a root left half carried (a
rename failing, a power cut) is never booted.
"""

from __future__ import annotations

import contextlib
import fnmatch
import json
import os
import stat
import time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field

from iscsiha.errors import IscsihaError, Report, clip
from iscsiha.executors import files
from iscsiha.model import accounts
from iscsiha.model.accounts import Ids
from iscsiha.model.box_state import CARRIED_RECORD, ENTRIES, PRODUCT_USERS, Entry, Kind
from iscsiha.model.root_image import RELEASE_PATH, Release, parse_release

Progress = Callable[[str], None]
RECORD_FORMAT = 1
TEMP_PREFIX = ".iscsiha-carry-"
_TEXT_MAX = 4 << 20  # accounts files; a release file is far smaller
_OWNER_REPORTS = 20  # per kind of problem: a tree of a missing owner is one line each


@dataclass(frozen=True)
class Item:
    """One thing to make in the new root; ``rel`` is its path below either root."""

    rel: str
    kind: str  # "dir", "file" or "link"
    mode: int
    uid: int  # the new root's ids
    gid: int
    times_ns: tuple[int, int]  # atime, mtime
    target: str = ""  # a link's


@dataclass(frozen=True)
class Carried:
    entries: tuple[str, ...]  # the table's paths that had something to carry
    absent: tuple[str, ...]  # the table's paths this box does not have
    files: int  # files and symlinks written
    bytes: int
    accounts: tuple[str, ...]  # the accounts files merged


def carry(old_root: str, new_root: str, progress: Progress,
          now: Callable[[], float] = time.time) -> Carried:
    """Carry ``old_root``'s state into ``new_root`` (a mounted slot)."""
    new_release = _release(new_root)
    if new_release is None:
        raise IscsihaError.single(
            "not-an-iscsiha-root", "root", new_root,
            f"an iscsiha root filesystem (with {RELEASE_PATH}, which image/build writes)",
            f"has no {RELEASE_PATH}")
    old_release = _release(old_root)  # None: a box from before release files
    old_ids, new_ids = _ids(old_root), _ids(new_root)
    accounts.require_users(_text(new_root, accounts.PASSWD), PRODUCT_USERS,
                           _shown(new_root, accounts.PASSWD))
    plan = _Plan(old_root, new_root, old_ids, new_ids)
    for entry in ENTRIES:
        plan.add(entry)
    plan.add_parents()
    if plan.problems:
        raise IscsihaError(plan.problems)
    merged = _merged_accounts(old_root, new_root)
    progress(f"carrying {len(plan.entries)} entries ({len(plan.items)} files and folders) "
             f"and {', '.join(PRODUCT_USERS)}'s account into the new root")
    writer = _Writer(old_root, new_root)
    try:
        for item in plan.items:
            writer.stage(item)
        for rel, data in merged.items():
            writer.stage_bytes(rel, data, like=os.path.join(new_root, rel))
        carried = Carried(tuple(plan.entries), tuple(plan.absent), writer.files,
                          writer.bytes, tuple(f"/{rel}" for rel in merged))
        record = _record(carried, old_release, new_release, now())
        writer.ensure_dir(os.path.dirname(CARRIED_RECORD.lstrip("/")))
        writer.stage_bytes(CARRIED_RECORD.lstrip("/"), record, mode=0o644)
    except BaseException:
        writer.discard()
        raise
    writer.swap()
    return carried


# -- reading either root ---------------------------------------------------------------------

def _shown(root: str, rel: str) -> str:
    """A path for reports: the box's own for the running root, else below the mount."""
    return f"/{rel}" if root == "/" else os.path.join(root, rel)


def _folder_problem(root: str, rel: str) -> tuple[bool, str | None]:
    """Whether every folder above ``rel`` exists in ``root``, and why one cannot be
    used (a symlink, or not a folder); checked component by component."""
    here = root
    for part in rel.split("/")[:-1]:
        here = os.path.join(here, part)
        try:
            st = os.lstat(here)
        except FileNotFoundError:
            return False, None
        if stat.S_ISLNK(st.st_mode):
            return True, f"{here} is a symlink (to {clip(os.readlink(here), 80)})"
        if not stat.S_ISDIR(st.st_mode):
            return True, f"{here} is not a folder"
    return True, None


def _read(root: str, rel: str, limit: int) -> bytes | None:
    """A regular file's first ``limit`` bytes, never through a symlink; None if missing."""
    whole, problem = _folder_problem(root, rel)
    if problem is not None:
        raise IscsihaError.single("not-a-folder", "file", _shown(root, rel),
                                  "a path of real folders", problem)
    if not whole:
        return None
    try:
        fd = os.open(os.path.join(root, rel), os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC)
    except FileNotFoundError:
        return None
    except OSError as exc:
        raise IscsihaError.single("unreadable", "file", _shown(root, rel),
                                  "a regular file, not a symlink",
                                  exc.strerror or str(exc)) from exc
    with os.fdopen(fd, "rb") as f:
        return f.read(limit)


def _text(root: str, rel: str) -> str:
    data = _read(root, rel, _TEXT_MAX + 1)
    if data is None or len(data) > _TEXT_MAX:
        raise IscsihaError.single("unreadable", "file", _shown(root, rel),
                                  f"a file of at most {_TEXT_MAX} bytes",
                                  "is missing" if data is None else "is larger")
    return data.decode("utf-8", errors="surrogateescape")


def _release(root: str) -> Release | None:
    rel = RELEASE_PATH.lstrip("/")
    data = _read(root, rel, 65536)
    if data is None:
        return None
    return parse_release(data.decode("utf-8", errors="replace"), _shown(root, rel))


def _ids(root: str) -> Ids:
    return accounts.parse_ids(_text(root, accounts.PASSWD), _text(root, accounts.GROUP),
                              root)


def _merged_accounts(old_root: str, new_root: str) -> dict[str, bytes]:
    """The new root's shadow, group and gshadow with the product's users merged in (only
    the files that change)."""
    out: dict[str, bytes] = {}
    for rel in (accounts.SHADOW, accounts.GROUP, accounts.GSHADOW):
        old, new = _read(old_root, rel, _TEXT_MAX), _read(new_root, rel, _TEXT_MAX)
        if old is None or new is None:
            continue  # a root without gshadow: nothing to merge
        args = (old.decode("utf-8", errors="surrogateescape"),
                new.decode("utf-8", errors="surrogateescape"))
        where = (_shown(old_root, rel), _shown(new_root, rel))
        if rel == accounts.SHADOW:
            text = accounts.merge_shadow(*args, PRODUCT_USERS, *where)
        else:
            text = accounts.merge_members(*args, PRODUCT_USERS, rel, *where)
        data = text.encode("utf-8", errors="surrogateescape")
        if data != new:
            out[rel] = data
    return out


def _record(carried: Carried, old: Release | None, new: Release, when: float) -> bytes:
    def release(r: Release | None) -> dict[str, str] | None:
        return None if r is None else {"version": r.version, "commit": r.commit,
                                       "root_uuid": r.root_uuid}
    return (json.dumps({
        "format": RECORD_FORMAT, "from": release(old), "to": release(new),
        "when": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(when)),
        "entries": list(carried.entries), "absent": list(carried.absent),
        "accounts": list(carried.accounts), "files": carried.files, "bytes": carried.bytes,
    }, indent=2) + "\n").encode()


# -- the plan ----------------------------------------------------------------------------------

@dataclass
class _Plan:
    old_root: str
    new_root: str
    old_ids: Ids
    new_ids: Ids
    items: list[Item] = field(default_factory=list)
    entries: list[str] = field(default_factory=list)
    absent: list[str] = field(default_factory=list)
    problems: list[Report] = field(default_factory=list)
    _counts: dict[str, int] = field(default_factory=dict)

    def add(self, entry: Entry) -> None:
        rel = entry.path.lstrip("/")
        whole, problem = _folder_problem(self.old_root, rel)
        if problem is not None:
            self._problem("not-a-folder", entry.path, "a path of real folders", problem)
            return
        st = _lstat(os.path.join(self.old_root, rel)) if whole else None
        if st is None:
            self.absent.append(entry.path)
            return
        before = len(self.items)
        if entry.kind is Kind.FILE:
            self._one(rel, st, entry.header)
        elif not stat.S_ISDIR(st.st_mode):
            self._problem("not-a-folder", entry.path, "a folder (not a symlink)",
                          f"is a {_kind_name(st.st_mode)}")
        elif entry.kind is Kind.TREE:
            self._tree(rel, st)
        else:
            patterns = entry.pattern.split()
            for name in sorted(os.listdir(os.path.join(self.old_root, rel))):
                if any(fnmatch.fnmatchcase(name, p) for p in patterns):
                    path = f"{rel}/{name}"
                    found = _lstat(os.path.join(self.old_root, path))
                    if found is not None:
                        self._one(path, found, entry.header)
        if len(self.items) > before:
            self.entries.append(entry.path)
        elif entry.kind is not Kind.TREE:
            self.absent.append(entry.path)

    def add_parents(self) -> None:
        """Folders the new root lacks above what is carried, made as the old root has
        them; then everything in an order where a folder comes before its content."""
        planned = {item.rel for item in self.items if item.kind == "dir"}
        for item in list(self.items):
            parts = item.rel.split("/")
            for depth in range(1, len(parts)):
                rel = "/".join(parts[:depth])
                if rel in planned or os.path.lexists(os.path.join(self.new_root, rel)):
                    continue
                st = _lstat(os.path.join(self.old_root, rel))
                if st is None:  # a folder gone from under us: nothing to copy from
                    continue
                planned.add(rel)
                self._add(rel, "dir", st)
        self.items.sort(key=lambda it: it.rel.split("/"))
        for item in self.items:
            self._check_new_side(item)

    def _one(self, rel: str, st: os.stat_result, header: str) -> None:
        if stat.S_ISLNK(st.st_mode):
            self._add(rel, "link", st, os.readlink(os.path.join(self.old_root, rel)))
        elif stat.S_ISDIR(st.st_mode):
            self._problem("is-a-folder", f"/{rel}", "a file or symlink", "is a folder")
        elif stat.S_ISREG(st.st_mode):
            if header and (_read(self.old_root, rel, len(header.encode())) or b"") \
                    != header.encode():
                return  # not written by iscsiha: the new release's own stays
            self._add(rel, "file", st)
        else:
            self._problem("special-file", f"/{rel}", "a regular file, folder or symlink",
                          f"is a {_kind_name(st.st_mode)}")

    def _tree(self, rel: str, st: os.stat_result) -> None:
        self._add(rel, "dir", st)
        with os.scandir(os.path.join(self.old_root, rel)) as found:
            names = sorted(e.name for e in found)
        for name in names:
            path = f"{rel}/{name}"
            if path == CARRIED_RECORD.lstrip("/"):
                continue  # the old root's own record: the new one is written below
            child = _lstat(os.path.join(self.old_root, path))
            if child is None:
                continue
            if stat.S_ISDIR(child.st_mode):
                self._tree(path, child)
            else:
                self._one(path, child, "")

    def _add(self, rel: str, kind: str, st: os.stat_result, target: str = "") -> None:
        owner = self._owner(rel, st)
        if owner is not None:
            self.items.append(Item(rel, kind, stat.S_IMODE(st.st_mode), *owner,
                                   (st.st_atime_ns, st.st_mtime_ns), target))

    def _owner(self, rel: str, st: os.stat_result) -> tuple[int, int] | None:
        """The new root's ids for the old owner's names; None (and a problem) if missing."""
        ids = []
        for what, number, names, new in (
                ("owner", st.st_uid, self.old_ids.user_names, self.new_ids.user_ids),
                ("group", st.st_gid, self.old_ids.group_names, self.new_ids.group_ids)):
            name = names.get(number)
            if name is None:
                self._problem(f"{what}-unknown", f"/{rel}",
                              f"an {what} named in the old root's /etc/"
                              f"{'passwd' if what == 'owner' else 'group'}",
                              f"is owned by {what} id {number}, which has no name there")
            elif name not in new:
                self._problem(f"{what}-missing", f"/{rel}",
                              f"an {what} the new root's /etc/"
                              f"{'passwd' if what == 'owner' else 'group'} has",
                              f"is owned by {what} {name}, which the new root does not have")
            else:
                ids.append(new[name])
        return (ids[0], ids[1]) if len(ids) == 2 else None

    def _check_new_side(self, item: Item) -> None:
        """Nothing may be written through a symlink of the new root, or over a folder."""
        _, problem = _folder_problem(self.new_root, item.rel)
        if problem is not None:
            self._problem("not-a-folder", f"/{item.rel}", "a path of real folders in the "
                          "new root", problem)
            return
        st = _lstat(os.path.join(self.new_root, item.rel))
        if st is None:
            return
        if item.kind == "dir" and not stat.S_ISDIR(st.st_mode):
            self._problem("not-a-folder", f"/{item.rel}", "a folder in the new root, as on "
                          "this box", f"is a {_kind_name(st.st_mode)} there")
        elif item.kind != "dir" and stat.S_ISDIR(st.st_mode):
            self._problem("is-a-folder", f"/{item.rel}", f"a {item.kind} in the new root, "
                          "as on this box", "is a folder there")

    def _problem(self, code: str, path: str, allowed: str, message: str) -> None:
        """A report, but at most a few of one kind (a tree of one missing owner)."""
        count = self._counts[code] = self._counts.get(code, 0) + 1
        if count <= _OWNER_REPORTS:
            self.problems.append(Report(code, "file", path, allowed, message))
        elif count == _OWNER_REPORTS + 1:
            self.problems.append(Report(code, "file", "(more)", allowed,
                                        f"more files than these {_OWNER_REPORTS} have this "
                                        "problem"))


def _lstat(path: str) -> os.stat_result | None:
    try:
        return os.lstat(path)
    except FileNotFoundError:
        return None


def _kind_name(mode: int) -> str:
    for test, name in ((stat.S_ISFIFO, "fifo"), (stat.S_ISSOCK, "socket"),
                       (stat.S_ISCHR, "character device"), (stat.S_ISBLK, "block device"),
                       (stat.S_ISLNK, "symlink"), (stat.S_ISDIR, "folder"),
                       (stat.S_ISREG, "regular file")):
        if test(mode):
            return name
    return "special file"


# -- writing -------------------------------------------------------------------------------

class _Writer:
    """Writes under temporary names, then renames; or takes everything back."""

    def __init__(self, old_root: str, new_root: str) -> None:
        self.old_root = old_root
        self.new_root = new_root
        self.temps: list[tuple[str, str]] = []  # (temporary, final)
        self.made: list[str] = []  # folders made, in order
        self.dirs: list[Item] = []  # carried folders, for their metadata after the renames
        self.touched: dict[str, tuple[int, int]] = {}  # folder -> its times before
        self.files = 0
        self.bytes = 0

    def _touch(self, folder: str) -> None:
        """Note a folder's times before something is made in it, for ``discard``."""
        if folder not in self.touched:
            st = os.lstat(folder)
            self.touched[folder] = (st.st_atime_ns, st.st_mtime_ns)

    def _temp(self, final: str) -> str:
        self._touch(os.path.dirname(final))
        temp = os.path.join(os.path.dirname(final), f"{TEMP_PREFIX}{len(self.temps)}")
        if os.path.lexists(temp):
            os.unlink(temp)
        self.temps.append((temp, final))
        return temp

    def stage(self, item: Item) -> None:
        final = os.path.join(self.new_root, item.rel)
        try:
            if item.kind == "dir":
                self.dirs.append(item)
                if not os.path.lexists(final):
                    self._touch(os.path.dirname(final))
                    os.mkdir(final, 0o700)
                    self.made.append(final)
            elif item.kind == "link":
                temp = self._temp(final)
                os.symlink(item.target, temp)
                os.chown(temp, item.uid, item.gid, follow_symlinks=False)
                os.utime(temp, ns=item.times_ns, follow_symlinks=False)
                self.files += 1
            else:
                self._copy(item, final)
        except OSError as exc:
            raise _failed(item.rel, exc) from exc

    def _copy(self, item: Item, final: str) -> None:
        try:
            src = os.open(os.path.join(self.old_root, item.rel),
                          os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC)
        except FileNotFoundError:
            return  # removed since the plan (a rotated log, an older CIB copy)
        try:
            temp = self._fill(final, self._counted(src), item.uid, item.gid, item.mode)
            os.utime(temp, ns=item.times_ns, follow_symlinks=False)
            self.files += 1
        finally:
            os.close(src)

    def _counted(self, fd: int) -> Iterator[bytes]:
        """The file's bytes in chunks, counted as carried."""
        while chunk := os.read(fd, 1 << 20):
            self.bytes += len(chunk)
            yield chunk

    def _fill(self, final: str, chunks: Iterable[bytes], uid: int, gid: int,
              mode: int) -> str:
        """A new temporary file for ``final`` holding ``chunks``, with its owner and mode;
        its name."""
        temp = self._temp(final)
        fd = os.open(temp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW
                     | os.O_CLOEXEC, 0o600)
        try:
            for chunk in chunks:
                files.write_all(fd, chunk)
            # chown first: it clears set-id bits, which fchmod then sets.
            os.fchown(fd, uid, gid)
            os.fchmod(fd, mode)
        finally:
            os.close(fd)
        return temp

    def stage_bytes(self, rel: str, data: bytes, like: str | None = None,
                    mode: int = 0o644) -> None:
        """A file made here (a merged accounts file, the record): mode and owner those of
        ``like`` (the file it replaces), else ``mode`` and root."""
        final = os.path.join(self.new_root, rel)
        try:
            uid = gid = 0
            if like is not None:
                st = os.lstat(like)
                mode, uid, gid = stat.S_IMODE(st.st_mode), st.st_uid, st.st_gid
            self._fill(final, (data,), uid, gid, mode)
        except OSError as exc:
            raise _failed(rel, exc) from exc

    def ensure_dir(self, rel: str) -> None:
        """A folder for the record, made (root's, 0755) if the new root lacks it."""
        here = self.new_root
        for part in rel.split("/"):
            here = os.path.join(here, part)
            if not os.path.lexists(here):
                try:
                    self._touch(os.path.dirname(here))
                    os.mkdir(here, 0o755)
                except OSError as exc:
                    raise _failed(rel, exc) from exc
                self.made.append(here)

    def discard(self) -> None:
        """Take back everything staged: the new root is as it was, times included."""
        for temp, _ in self.temps:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(temp)
        for folder in reversed(self.made):
            with contextlib.suppress(OSError):  # not empty: something else wrote there
                os.rmdir(folder)
        for folder, times in self.touched.items():
            with contextlib.suppress(OSError):  # one of those removed just now
                os.utime(folder, ns=times, follow_symlinks=False)

    def swap(self) -> None:
        done = 0
        try:
            for temp, final in self.temps:
                os.replace(temp, final)
                done += 1
            # Deepest first: setting a folder's times must come after its content changed.
            for item in reversed(self.dirs):
                path = os.path.join(self.new_root, item.rel)
                os.chown(path, item.uid, item.gid, follow_symlinks=False)
                os.chmod(path, item.mode)  # a folder checked above, not a symlink
                os.utime(path, ns=item.times_ns, follow_symlinks=False)
        except OSError as exc:
            for temp, _ in self.temps[done:]:
                with contextlib.suppress(OSError):
                    os.unlink(temp)
            where = os.path.relpath(exc.filename2 or exc.filename or self.new_root,
                                    self.new_root)
            raise IscsihaError([
                _failed(where, exc, "").reports[0],
                Report("partly-carried", "root", self.new_root, "",
                       f"{done} of {len(self.temps)} files were renamed into place: the new "
                       "root holds part of this box's state"),
            ]) from exc


def _failed(rel: str, exc: OSError, outcome: str = ": nothing was carried") -> IscsihaError:
    return IscsihaError.single("carry-failed", "file", f"/{rel}",
                               "copied into the new root", f"{exc.strerror or exc}{outcome}")
