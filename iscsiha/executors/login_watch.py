"""The appliance's record of each initiator's first login to a target after its start.

LIO logs a successful login only at pr_debug level, so the journal has no line for the
moment initiators come back after a failover. The target agent's start calls
``watch_logins`` once the port is open: it spawns a detached watcher (``python -m
iscsiha.executors.login_watch IQN``) that polls the target's sessions in configfs every
POLL seconds for at most WATCH_MAX and logs one line per initiator's first login, as
iscsiha.timeline reads it back ("first initiator logged in (IQN)").

The watcher never makes start fail and always ends on its own: at WATCH_MAX, or as soon
as the target is gone from configfs (stopped). A session already there at the first poll
is taken as a login then: start creates the target afresh on a failover or move, so
none can be older than the open port.
"""

from __future__ import annotations

import glob
import os
import sys
import syslog
import time
from collections.abc import Callable, Sequence
from typing import TextIO

from iscsiha.errors import IscsihaError
from iscsiha.executors.lio import ISCSI_FABRIC_PATH
from iscsiha.executors.runner import Runner
from iscsiha.model.names import iscsi_name_problem
from iscsiha.timeline import LOGIN_IDENTIFIER, LOGIN_LINE

WATCH_MAX = 120.0  # initiators that come back at all do so well within this
POLL = 0.2  # the login's time is known to this much
# In an ACL's info file (iscsi_target_configfs.c) while its session is logged in.
_LOGGED_IN = "Session State: TARG_SESS_STATE_LOGGED_IN"
_INFO_MAX = 64 * 1024


def watch_logins(iqn: str, runner: Runner | None = None, fabric: str = ISCSI_FABRIC_PATH,
                 err: TextIO | None = None) -> bool:
    """Spawn the watcher for ``iqn``; whether it was spawned. Never raises: a watcher
    that cannot start costs the timeline its login line, not the target its start."""
    if not os.path.isdir(os.path.join(fabric, iqn)):
        return False  # not in configfs (LIO not loaded here, or a test's fake): nothing to watch
    try:
        (runner or Runner()).spawn([sys.executable, "-m", __name__, iqn])
    except (IscsihaError, OSError, ValueError) as exc:
        print(f"iscsiha target {iqn}: login watcher not started: {exc}", file=err or sys.stderr)
        return False
    return True


def _read(path: str) -> str:
    try:
        with open(path, "rb") as f:
            return f.read(_INFO_MAX).decode(errors="replace")
    except OSError:
        return ""  # gone between listing and reading: the session ended


def sessions(iqn: str, fabric: str = ISCSI_FABRIC_PATH,
             read: Callable[[str], str] = _read) -> set[str] | None:
    """Initiators logged in to ``iqn`` now: those with an ACL whose session is logged in,
    and those let in without one (``dynamic_sessions``); None when the target is gone.
    Names that are no iSCSI name are left out (they reach the journal)."""
    target = os.path.join(fabric, iqn)
    if not os.path.isdir(target):
        return None
    found: set[str] = set()
    for tpg in glob.glob(os.path.join(glob.escape(target), "tpgt_*")):
        found.update(read(os.path.join(tpg, "dynamic_sessions")).split())
        for acl in glob.glob(os.path.join(glob.escape(tpg), "acls", "*")):
            if _LOGGED_IN in read(os.path.join(acl, "info")):
                found.add(os.path.basename(acl))
    return {name for name in found if iscsi_name_problem(name) is None}


def watch(iqn: str, log: Callable[[str], None],
          current: Callable[[], set[str] | None],
          clock: Callable[[], float] = time.monotonic,
          sleep: Callable[[float], None] = time.sleep) -> list[str]:
    """Log each initiator's first login until WATCH_MAX or the target is gone; those."""
    deadline = clock() + WATCH_MAX
    seen: list[str] = []
    while clock() < deadline:
        now = current()
        if now is None:
            break
        for initiator in sorted(now - set(seen)):
            log(LOGIN_LINE.format(iqn=iqn, initiator=initiator))
            seen.append(initiator)
        sleep(POLL)
    return seen


def _journal(line: str) -> None:
    # syslog(3) reaches journald with the identifier as SYSLOG_IDENTIFIER: no process
    # per line, nothing beyond the standard library.
    syslog.openlog(LOGIN_IDENTIFIER, 0, syslog.LOG_DAEMON)
    syslog.syslog(syslog.LOG_NOTICE, line)


def main(argv: Sequence[str] | None = None) -> int:
    args = list(sys.argv[1:] if argv is None else argv)
    if len(args) != 1 or iscsi_name_problem(args[0]) is not None:
        print(f"usage: python -m {__name__} IQN (a target's iSCSI name); got {args!r}"[:300],
              file=sys.stderr)
        return 2
    iqn = args[0]
    watch(iqn, _journal, lambda: sessions(iqn))
    return 0


if __name__ == "__main__":
    sys.exit(main())
