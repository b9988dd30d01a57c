"""`iscsiha verify`: DRBD online verify of the resources this box is Primary for.

One resource at a time (each reads both disks whole), each waited for within a
bound, its progress reported. Blocks found different are counted by DRBD in the
out-of-sync bitmap; a count above 0 raises the `drbd-verify-mismatch` alert (through
iscsiha-alert where the image has it) and makes the run fail, so the journal and
`systemctl --failed` show it. DRBD does not copy the differing blocks by itself:
docs/support.md says how. The last run is recorded for `iscsiha metrics`.

The daily iscsiha-verify.timer runs `iscsiha verify --scheduled`, which verifies
only when the desired state's [maintenance] verify schedule says a run is due.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Protocol

from iscsiha.commands.cluster_env import RunsCommands
from iscsiha.commands.verify_facts import (
    VERIFYING,
    Decision,
    Record,
    ResourceResult,
    decide,
    due,
    parse_show,
    record_from_json,
    record_json,
    verify_progress,
)
from iscsiha.errors import IscsihaError
from iscsiha.executors.drbd import ProcDevice, parse_proc_drbd
from iscsiha.model.types import VerifySchedule

RECORD_PATH = "/var/lib/iscsiha/verify.json"
ALERT = "/usr/bin/iscsiha-alert"
MISMATCH_EVENT = "drbd-verify-mismatch"
POLL_SECONDS = 5.0
PROGRESS_EVERY = 60.0
DEFAULT_TIMEOUT = 6 * 3600.0  # per resource: 2 TiB at DRBD's default 100 MiB/s verify rate

Progress = Callable[[str], None]


class VerifyDrbd(Protocol):
    """executors.drbd.Drbd, as far as a verify uses it."""

    def show(self) -> str: ...

    def proc_text(self) -> str: ...

    def verify(self, res: str) -> None: ...


@dataclass(frozen=True)
class VerifyEnv:
    drbd: VerifyDrbd
    runner: RunsCommands
    read: Callable[[str], bytes | None]
    write: Callable[[str, bytes], None]
    exists: Callable[[str], bool] = os.path.exists
    wall_clock: Callable[[], float] = time.time
    monotonic: Callable[[], float] = time.monotonic
    sleep: Callable[[float], None] = time.sleep
    record_path: str = RECORD_PATH


def last_record(read: Callable[[str], bytes | None],
                path: str = RECORD_PATH) -> Record | None:
    """This box's last run, or None (no run yet, or a record it cannot read)."""
    try:
        data = read(path)
    except OSError:
        return None
    return record_from_json(data.decode(errors="replace")) if data else None


def run(env: VerifyEnv, schedule: VerifySchedule | None, timeout: float,
        progress: Progress) -> Record | None:
    """Verify now (``schedule`` None: asked by hand) or when ``schedule`` says it is due;
    the record of this run, or None when none was due."""
    now = env.wall_clock()
    if schedule is not None:
        last = last_record(env.read, env.record_path)
        if not due(schedule, last.started if last else None, now):
            progress(f"not due (schedule {schedule.value}"
                     f"{'' if last is None else f', last run {_ago(now - last.started)} ago'})")
            return None
    decisions = decide(parse_show(env.drbd.show()), parse_proc_drbd(env.drbd.proc_text()))
    results: dict[str, ResourceResult] = {}
    record = Record(now, results)
    for d in decisions:
        if not d.verify:
            progress(f"{d.resource}: skipped: {d.reason}")
            results[d.resource] = ResourceResult("skipped", 0, env.wall_clock(), 0.0, d.reason)
        else:
            results[d.resource] = _verify_one(env, d, timeout, progress)
        _save(env, record)  # each result kept at once: a run cut short still shows
    if not decisions:
        progress("no DRBD resource runs on this box: nothing to verify")
    _save(env, record)
    return record


def _verify_one(env: VerifyEnv, d: Decision, timeout: float,
                progress: Progress) -> ResourceResult:
    started, t0 = env.wall_clock(), env.monotonic()
    progress(f"{d.resource}: verifying (at most {timeout:.0f} s)")
    try:
        env.drbd.verify(d.resource)
    except IscsihaError as exc:
        why = "; ".join(r.message or r.code for r in exc.reports)
        progress(f"{d.resource}: verify could not start: {why}")
        return ResourceResult("failed", 0, started, 0.0, why[:500])
    shown_at = t0
    while True:
        proc_text = env.drbd.proc_text()
        devs = parse_proc_drbd(proc_text)
        running = [n for n in d.minors if devs.get(n) and devs[n].connection in VERIFYING]
        elapsed = env.monotonic() - t0
        if not running:
            break
        if elapsed > timeout:
            progress(f"{d.resource}: still verifying after {elapsed:.0f} s: left running, "
                     "not counted")
            return ResourceResult("timeout", 0, started, elapsed, "still running")
        if env.monotonic() - shown_at >= PROGRESS_EVERY:
            done = verify_progress(proc_text)
            shown = ", ".join(f"minor {n} {done[n]:.1f}%" for n in running if n in done)
            progress(f"{d.resource}: verifying{': ' + shown if shown else ''}")
            shown_at = env.monotonic()
        env.sleep(POLL_SECONDS)
    return _finished(env, d, devs, started, env.monotonic() - t0, progress)


def _finished(env: VerifyEnv, d: Decision, devs: dict[int, ProcDevice], started: float,
              seconds: float, progress: Progress) -> ResourceResult:
    if any(devs.get(n) is None or devs[n].connection != "Connected" for n in d.minors):
        states = ", ".join(f"minor {n} {devs[n].connection if n in devs else 'gone'}"
                           for n in d.minors)
        progress(f"{d.resource}: verify interrupted ({states})")
        return ResourceResult("interrupted", 0, started, seconds, states[:500])
    found = sum(devs[n].out_of_sync_kib for n in d.minors) * 1024
    if not found:
        progress(f"{d.resource}: verified in {seconds:.0f} s: both sides identical")
        return ResourceResult("ok", 0, started, seconds)
    progress(f"{d.resource}: verify found {found} bytes that differ between the boxes "
             "(docs/support.md: DRBD online verify)")
    _alert(env, d.resource, found, progress)
    return ResourceResult("mismatch", found, started, seconds)


def _alert(env: VerifyEnv, resource: str, found: int, progress: Progress) -> None:
    if not env.exists(ALERT):
        progress(f"{resource}: no {ALERT} on this box: the journal line above is the alert")
        return
    argv = [ALERT, "event", MISMATCH_EVENT, f"resource={resource}", f"bytes={found}"]
    try:
        result = env.runner.run(argv, check=False, timeout=60)
    except IscsihaError as exc:
        progress(f"{resource}: alert not sent: {'; '.join(r.message for r in exc.reports)}")
        return
    if not result.ok:
        progress(f"{resource}: alert not sent: {ALERT} exited {result.returncode}: "
                 f"{(result.stderr or result.stdout).strip()[-200:]}")


def _save(env: VerifyEnv, record: Record) -> None:
    try:
        env.write(env.record_path, record_json(record).encode())
    except OSError as exc:
        raise IscsihaError.single("unwritable-file", "file", env.record_path,
                                  "a file root may write", exc.strerror or str(exc)) from exc


def failed(record: Record) -> list[str]:
    """The resources a run found different or could not verify."""
    return [n for n, r in record.resources.items()
            if r.outcome in ("mismatch", "failed", "timeout", "interrupted")]


def _ago(seconds: float) -> str:
    return f"{seconds / 86400:.1f} days" if seconds >= 86400 else f"{seconds / 3600:.1f} h"
