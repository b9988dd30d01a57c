"""A filesystem + database workload run on the lab's initiator (stdlib only; sent as
source text, like io_probe.py).

"run": on a mounted filesystem, a SQLite database takes numbered transactions: each
inserts row n (a payload and a checksum of n and the payload) and updates the running
total in the same transaction, so a torn transaction shows as a total that disagrees
with the rows. Once COMMIT returns, n is committed: the highest committed n is written
to a state file on the initiator's own root (fsync'd), outside the LUN under test.
Stops at a stop file or a time limit; prints one JSON line: commits, errors, the longest
pause between commits, seconds.

"check": unmounts, runs ``e2fsck -fn`` on the device, mounts again, runs SQLite's
integrity check and verifies that every committed row is there with a right checksum and
that the total agrees; prints one JSON line.

WAL with synchronous=FULL: every commit appends to the WAL and fsyncs it before COMMIT
returns, so a returned COMMIT is on the LUN. In DELETE mode the commit point is the
journal's unlink, which FULL does not fsync (only EXTRA does): a transaction the
application saw committed could roll back without any fault of the storage.

    python3 -c "$(cat db_workload.py)" run --mount /mnt/db --state /root/db.state ...
    python3 -c "$(cat db_workload.py)" check --device /dev/sdc --mount /mnt/db ...
"""

from __future__ import annotations

import argparse
import contextlib
import hashlib
import json
import os
import sqlite3
import subprocess
import sys
import time
from typing import Any

DB_NAME = "workload.sqlite"
MIN_INTERVAL = 0.02  # at most 50 commits a second: the database stays small on a 64M LUN
KEEP = 100_000  # rows kept: a run starts by dropping older ones (~21 MB of rows)
STATE_WIDTH = 64  # the state line is rewritten in place, padded to this many bytes
MOUNT_OPTIONS = "noatime,errors=remount-ro"  # an ext4 error fails the workload, loudly
FIRST_MISSING = 10  # missing row numbers listed in the report
TEXT_LIMIT = 5  # error texts kept
TOOL_TIMEOUT = 300.0  # e2fsck, mount, umount


def payload(n: int) -> str:
    """Row n's payload: 64 to 191 characters, derived from n."""
    seed = hashlib.sha256(f"payload {n}".encode()).hexdigest()
    return (seed * 3)[:64 + n % 128]


def checksum(n: int, text: str) -> str:
    return hashlib.sha256(f"{n}:{text}".encode()).hexdigest()


def connect(path: str) -> sqlite3.Connection:
    # Autocommit at the driver level: BEGIN and COMMIT are ours, so "COMMIT returned" is exact.
    db = sqlite3.connect(path, isolation_level=None, timeout=30)
    db.execute("PRAGMA journal_mode=WAL")
    db.execute("PRAGMA synchronous=FULL")
    db.execute("CREATE TABLE IF NOT EXISTS tx (n INTEGER PRIMARY KEY, payload TEXT NOT NULL,"
               " sum TEXT NOT NULL)")
    db.execute("CREATE TABLE IF NOT EXISTS total (id INTEGER PRIMARY KEY CHECK (id = 0),"
               " rows INTEGER NOT NULL, n_sum INTEGER NOT NULL)")
    db.execute("INSERT OR IGNORE INTO total VALUES (0, 0, 0)")
    return db


def read_state(path: str) -> tuple[int, int]:
    """(highest committed n, lowest n still kept); (0, 1) before the first run."""
    try:
        with open(path, encoding="ascii") as f:
            text = f.read(STATE_WIDTH * 2)
    except FileNotFoundError:
        return 0, 1
    words = text.split()
    if len(words) != 2 or not all(w.isdigit() for w in words) or int(words[1]) < 1:
        raise ValueError(f"state file {path}: {text.strip()!r} is not 'COMMITTED FLOOR' "
                         "(two whole numbers, the floor at least 1)")
    return int(words[0]), int(words[1])


class State:
    """The state file on the initiator's root, rewritten in place and fsync'd."""

    def __init__(self, path: str) -> None:
        self.committed, self.floor = read_state(path)
        self.fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)

    def write(self, committed: int, floor: int) -> None:
        line = f"{committed} {floor}".ljust(STATE_WIDTH - 1) + "\n"
        os.pwrite(self.fd, line.encode("ascii"), 0)
        os.fsync(self.fd)
        self.committed, self.floor = committed, floor

    def close(self) -> None:
        os.close(self.fd)


def trim(db: sqlite3.Connection, state: State, keep: int) -> None:
    """Drop rows below the newest ``keep``, total adjusted in the same transaction. The
    new floor is recorded first: a failed drop leaves rows below it, never a gap above."""
    floor = max(state.floor, state.committed - keep + 1)
    if floor == state.floor:
        return
    state.write(state.committed, floor)
    db.execute("BEGIN IMMEDIATE")
    try:
        rows, n_sum = db.execute("SELECT count(*), coalesce(sum(n), 0) FROM tx WHERE n < ?",
                                 (floor,)).fetchone()
        db.execute("DELETE FROM tx WHERE n < ?", (floor,))
        db.execute("UPDATE total SET rows = rows - ?, n_sum = n_sum - ? WHERE id = 0",
                   (rows, n_sum))
        db.execute("COMMIT")
    except BaseException:
        db.execute("ROLLBACK")
        raise


def commit_one(db: sqlite3.Connection, n: int) -> None:
    text = payload(n)
    db.execute("BEGIN IMMEDIATE")
    db.execute("INSERT INTO tx VALUES (?, ?, ?)", (n, text, checksum(n, text)))
    db.execute("UPDATE total SET rows = rows + 1, n_sum = n_sum + ? WHERE id = 0", (n,))
    db.execute("COMMIT")


def next_n(db: sqlite3.Connection, state: State) -> int:
    # A COMMIT that failed may have landed: never reuse a number the database holds.
    (highest,) = db.execute("SELECT coalesce(max(n), 0) FROM tx").fetchone()
    return max(int(highest), state.committed) + 1


def run(mount: str, state_path: str, seconds: float, stop_file: str,
        keep: int = KEEP, interval: float = MIN_INTERVAL) -> dict[str, Any]:
    """Commit numbered transactions until the stop file appears or ``seconds`` pass."""
    state = State(state_path)
    path = os.path.join(mount, DB_NAME)
    commits = errors = 0
    error_text: list[str] = []
    start = last_commit = time.monotonic()
    wall = time.time() - start  # the wall clock at monotonic 0
    longest = longest_at = 0.0
    deadline = start + seconds
    db: sqlite3.Connection | None = None
    n = 0  # taken from the database whenever it is (re)opened
    try:
        while time.monotonic() < deadline and not os.path.exists(stop_file):
            began = time.monotonic()
            try:
                if db is None:
                    db = connect(path)
                    trim(db, state, keep)
                    n = next_n(db, state)
                commit_one(db, n)
            except (sqlite3.Error, OSError) as exc:
                errors += 1
                if len(error_text) < TEXT_LIMIT:
                    error_text.append(f"{path} transaction {n}: {exc}")
                if db is not None:
                    with contextlib.suppress(sqlite3.Error):  # the error is counted already
                        db.close()
                db = None  # reopened, and n taken anew, on the next round
                time.sleep(0.5)
                continue
            now = time.monotonic()
            state.write(n, state.floor)
            commits += 1
            if now - last_commit > longest:
                longest, longest_at = now - last_commit, last_commit
            last_commit = now
            n += 1
            time.sleep(max(0.0, interval - (time.monotonic() - began)))
    finally:
        if db is not None:
            db.close()
        state.close()
    end = time.monotonic()
    return {"commits": commits, "errors": errors, "error_text": error_text,
            "pause_s": round(longest, 3), "pause_from_wall": round(wall + longest_at, 3),
            "committed": state.committed, "seconds": round(end - start, 3)}


def unreadable(why: str, committed: int, floor: int) -> dict[str, Any]:
    """The check's figures for a database that cannot be read: every committed row missing."""
    return {"integrity": why, "present": 0, "missing": max(0, committed - floor + 1),
            "missing_first": [], "bad_checksums": 0, "beyond_committed": 0, "total_ok": False}


def verify(path: str, committed: int, floor: int) -> dict[str, Any]:
    """Integrity check, every row floor..committed present with its checksum right, and
    the running total equal to the rows'."""
    if not os.path.exists(path):
        return unreadable(f"no database at {path}", committed, floor)
    try:
        return _verify(path, committed, floor)
    except sqlite3.Error as exc:  # "database disk image is malformed", and the like
        return unreadable(f"{path}: {exc}", committed, floor)


def _verify(path: str, committed: int, floor: int) -> dict[str, Any]:
    db = sqlite3.connect(path, isolation_level=None, timeout=30)
    try:
        found = [row[0] for row in db.execute("PRAGMA integrity_check")]
        integrity = "ok" if found == ["ok"] else "; ".join(map(str, found[:TEXT_LIMIT]))
        present = bad = missing = 0
        missing_first: list[int] = []
        expected = floor
        for n, text, summed in db.execute(
                "SELECT n, payload, sum FROM tx WHERE n BETWEEN ? AND ? ORDER BY n",
                (floor, committed)):
            gap = range(expected, n)
            missing += len(gap)
            missing_first += list(gap[:FIRST_MISSING - len(missing_first)])
            present += 1
            bad += checksum(n, text) != summed
            expected = n + 1
        gap = range(expected, committed + 1)
        missing += len(gap)
        missing_first += list(gap[:max(0, FIRST_MISSING - len(missing_first))])
        (beyond,) = db.execute("SELECT count(*) FROM tx WHERE n > ?", (committed,)).fetchone()
        rows, n_sum = db.execute("SELECT count(*), coalesce(sum(n), 0) FROM tx").fetchone()
        total = db.execute("SELECT rows, n_sum FROM total WHERE id = 0").fetchone()
    finally:
        db.close()
    return {"integrity": integrity, "present": present, "missing": missing,
            "missing_first": missing_first, "bad_checksums": bad, "beyond_committed": beyond,
            "total_ok": total == (rows, n_sum)}


def tool(argv: list[str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(argv, capture_output=True, text=True, timeout=TOOL_TIMEOUT,
                          check=False)


def fsck(device: str, mount: str) -> dict[str, Any]:
    """Unmount, let the device's cache go (e2fsck then reads what the target holds),
    ``e2fsck -fn``, mount again."""
    if os.path.ismount(mount):
        done = tool(["umount", mount])
        if done.returncode:
            return {"fsck_clean": False, "fsck_output": f"umount {mount}: {done.stderr}"}
    tool(["blockdev", "--flushbufs", device])
    done = tool(["e2fsck", "-fn", device])
    result: dict[str, Any] = {"fsck_clean": done.returncode == 0}
    if done.returncode:
        result["fsck_output"] = (done.stdout + done.stderr)[-3000:]
    mounted = tool(["mount", "-o", MOUNT_OPTIONS, device, mount])
    if mounted.returncode:
        result["mount_error"] = mounted.stderr.strip()
    return result


def check(mount: str, state_path: str, device: str | None) -> dict[str, Any]:
    """The filesystem (unless ``device`` is None) and then the database."""
    committed, floor = read_state(state_path)
    result: dict[str, Any] = {"committed": committed, "floor": floor}
    if device is not None:
        result |= fsck(device, mount)
    result |= verify(os.path.join(mount, DB_NAME), committed, floor)
    os.sync()  # nothing left in flight when the boxes' copies are compared
    return result


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser()
    sub = parser.add_subparsers(dest="mode", required=True)
    p = sub.add_parser("run")
    p.add_argument("--mount", required=True)
    p.add_argument("--state", required=True)
    p.add_argument("--seconds", type=float, default=60.0)
    p.add_argument("--stop-file", default="/tmp/db-workload.stop")
    p = sub.add_parser("check")
    p.add_argument("--mount", required=True)
    p.add_argument("--state", required=True)
    p.add_argument("--device", help="the filesystem's block device; without it no e2fsck")
    args = parser.parse_args(argv)
    try:
        if args.mode == "run":
            report = run(args.mount, args.state, args.seconds, args.stop_file)
        else:
            report = check(args.mount, args.state, args.device)
    except (ValueError, OSError, sqlite3.Error, subprocess.SubprocessError) as exc:
        print(json.dumps({"failed": f"{args.mode}: {exc}"}))
        sys.exit(1)
    print(json.dumps(report))


if __name__ == "__main__":
    main()
