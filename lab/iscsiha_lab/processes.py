"""Long-running lab processes: start them detached, know them again by pid, stop them by pid.

A pid alone is not an identity: once a process is gone the kernel may give its
number to another. We record (pid, start time in clock ticks since boot, from
/proc/PID/stat) and only ever signal a pid whose start time still matches, so a
stale state file can never make the lab kill an unrelated process. Nothing here
looks processes up by name.
"""

from __future__ import annotations

import ctypes
import os
import signal
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

# prctl(PR_SET_CHILD_SUBREAPER): orphans below us are re-parented to us, not to pid 1.
# Needed because some machines' pid 1 (containers, this lab's CI) never reaps
# orphans, which would leave every killed UML process behind as a zombie.
_PR_SET_CHILD_SUBREAPER = 36


@dataclass(frozen=True)
class ProcessId:
    pid: int
    start_ticks: int  # field 22 of /proc/PID/stat: when the process started

    def to_json(self) -> dict[str, int]:
        return {"pid": self.pid, "start_ticks": self.start_ticks}

    @classmethod
    def from_json(cls, data: Mapping[str, object]) -> ProcessId:
        pid, ticks = data["pid"], data["start_ticks"]
        if not isinstance(pid, int) or not isinstance(ticks, int):
            raise ValueError(f"bad process record {data!r}")
        return cls(pid, ticks)


def _stat_fields(pid: int) -> list[str] | None:
    try:
        raw = Path(f"/proc/{pid}/stat").read_text(encoding="ascii", errors="replace")
    except (FileNotFoundError, ProcessLookupError, PermissionError):
        return None
    # The command name (field 2) is in parentheses and may hold spaces: split after it.
    return raw[raw.rindex(")") + 2 :].split()


def identify(pid: int) -> ProcessId | None:
    fields = _stat_fields(pid)
    if fields is None:
        return None
    return ProcessId(pid, int(fields[19]))  # fields[0] is stat field 3 (state)


def is_running(proc: ProcessId) -> bool:
    """True while the very process we started exists and is not a zombie."""
    fields = _stat_fields(proc.pid)
    return fields is not None and int(fields[19]) == proc.start_ticks and fields[0] not in "ZX"


def is_stopped(proc: ProcessId) -> bool:
    fields = _stat_fields(proc.pid)
    return fields is not None and int(fields[19]) == proc.start_ticks and fields[0] in "Tt"


def signal_group(proc: ProcessId, sig: signal.Signals) -> bool:
    """Signal the process group led by proc (our children are session leaders). False: gone."""
    if not is_running(proc):
        return False
    try:
        os.killpg(proc.pid, sig)
    except ProcessLookupError:
        return False
    return True


def signal_process(proc: ProcessId, sig: signal.Signals) -> bool:
    if not is_running(proc):
        return False
    try:
        os.kill(proc.pid, sig)
    except ProcessLookupError:
        return False
    return True


def wait_gone(proc: ProcessId, timeout: float, reap: bool = False) -> bool:
    """Wait until proc has exited (a zombie counts as gone); reap it if it is our child."""
    deadline = time.monotonic() + timeout
    while True:
        if reap:
            reap_children()
        if not is_running(proc):
            return True
        if time.monotonic() >= deadline:
            return False
        time.sleep(0.05)


def stop(proc: ProcessId, grace: float = 5.0, group: bool = True, reap: bool = False) -> None:
    """SIGTERM, then SIGKILL after ``grace`` seconds; whole process group when ``group``."""
    send = signal_group if group else signal_process
    if not send(proc, signal.SIGTERM):
        return
    if wait_gone(proc, grace, reap=reap):
        return
    send(proc, signal.SIGKILL)
    wait_gone(proc, 10.0, reap=reap)


def spawn(
    argv: Sequence[str],
    log_path: Path,
    env: Mapping[str, str] | None = None,
) -> ProcessId:
    """Start argv in a new session (so its pid is also its process group), output to a log.

    posix_spawn rather than subprocess.Popen: the supervisor reaps every child
    with waitpid(-1), which would race with Popen's own bookkeeping.
    """
    if not argv or not os.path.isabs(argv[0]):
        raise ValueError(f"spawn needs an absolute program path, got {list(argv)!r}")
    log_path.parent.mkdir(parents=True, exist_ok=True)
    flags = os.O_WRONLY | os.O_CREAT | os.O_APPEND  # no O_CLOEXEC: it is the child's stdout
    actions = [
        (os.POSIX_SPAWN_OPEN, 0, "/dev/null", os.O_RDONLY, 0),
        (os.POSIX_SPAWN_OPEN, 1, str(log_path), flags, 0o600),
        (os.POSIX_SPAWN_DUP2, 1, 2),
    ]
    pid = os.posix_spawn(
        argv[0], list(argv), dict(env if env is not None else os.environ),
        file_actions=actions, setsid=True,
    )
    ident = identify(pid)
    if ident is None:  # exited (and was reaped by someone) within microseconds
        return ProcessId(pid, -1)
    return ident


def reap_children() -> list[tuple[int, int]]:
    """Collect every exited child (or orphan handed to us as subreaper): [(pid, status)]."""
    reaped = []
    while True:
        try:
            pid, status = os.waitpid(-1, os.WNOHANG)
        except ChildProcessError:
            break
        if pid == 0:
            break
        reaped.append((pid, status))
    return reaped


def become_subreaper() -> None:
    libc = ctypes.CDLL(None, use_errno=True)
    if libc.prctl(_PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0) != 0:
        err = ctypes.get_errno()
        raise OSError(err, f"prctl(PR_SET_CHILD_SUBREAPER): {os.strerror(err)}")
