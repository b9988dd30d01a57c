"""Record a change made through the CLI or the console in the audit log of both boxes,
and read the log back (`iscsiha audit`).

Each box keeps its own log; the box where the command ran writes its record and sends
a copy to the peer over the same SSH step channel apply uses (`iscsiha node
audit-copy`, a typed request the peer checks like any other). A peer that is down or
refuses gets no copy: the local record then says so in its ``peer`` field, so the gap
is visible on the box that has the record.
"""

from __future__ import annotations

import dataclasses
import getpass
import os
import socket
import time
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime

from iscsiha import audit
from iscsiha.commands.cluster_env import Boxes
from iscsiha.errors import IscsihaError
from iscsiha.executors.audit_log import AuditLog
from iscsiha.protocol import messages as m
from iscsiha.views import format_report

PEER_TIMEOUT = 20.0  # an SSH connection (10 s) and one small write


@dataclass(frozen=True)
class Started:
    """What is known when a change begins: who, what was typed, the state before."""

    via: audit.Via
    argv: tuple[str, ...]
    person: audit.Who
    before: str | None
    secrets: frozenset[str]


def login_name() -> str | None:
    try:
        return os.getlogin()
    except OSError:  # no controlling terminal (a unit, a pipe)
        return None


def begin(via: audit.Via, argv: Sequence[str], before: str | None,
          secrets: Iterable[str] = (), env: Mapping[str, str] | None = None) -> Started:
    person = audit.who(os.environ if env is None else env, login_name(), getpass.getuser())
    return Started(via, tuple(argv), person, before, frozenset(s for s in secrets if s))


def outcome(exc: BaseException | None, code: int = 0) -> tuple[audit.Result, str]:
    """(result, message) for a command that ended with ``exc`` and exit ``code``."""
    if exc is None:
        return ("ok", "") if code == 0 else ("refused", f"exit code {code}")
    if isinstance(exc, IscsihaError):
        return "refused", "\n".join(format_report(r) for r in exc.reports)
    return "failed", f"{type(exc).__name__}"


def finish(started: Started, result: audit.Result, message: str, after: str | None,
           log: AuditLog, boxes: Boxes | None, *, box: str | None = None,
           clock: Callable[[], float] = time.time) -> audit.Record:
    """Write the record here and send its copy to the peer; an unwritable log raises
    OSError (the caller warns: the change itself has already happened)."""
    rec = audit.record(clock=clock(), box=box or socket.gethostname(), person=started.person,
                       via=started.via, argv=started.argv, result=result, message=message,
                       before=started.before, after=after, secrets=started.secrets)
    rec = dataclasses.replace(rec, peer=send_copy(rec, boxes))
    log.append(audit.line(rec))
    return rec


def send_copy(rec: audit.Record, boxes: Boxes | None) -> str:
    """The peer's copy; what became of it, for the local record."""
    if boxes is None:
        return "no copy: this box names no peer (no desired state)"
    peers = [n for n in boxes.names if n != boxes.here]
    if not peers:
        return "no copy: no peer"
    copy = m.AuditCopy(rec.time, boxes.here, rec.user, rec.source, rec.via,
                       rec.command, rec.result, rec.message, rec.diff)
    sent = []
    for peer in peers:
        try:
            boxes.call(peer, m.AUDIT_COPY, copy, timeout=PEER_TIMEOUT)
            sent.append(f"copy on {peer}")
        except IscsihaError as exc:
            first = exc.reports[0]
            sent.append(f"NO COPY on {peer} (down or refused): "
                        f"{audit.text(first.message or first.code, 300)}")
    return "; ".join(sent)


class Recorder:
    """Records the changes one interface (the CLI, the console) makes: ``begin`` before
    a command, ``end`` after it, whatever its outcome."""

    def __init__(self, via: audit.Via, log: AuditLog, read_desired: Callable[[], str | None],
                 boxes: Callable[[], Boxes | None], warn: Callable[[str], None]) -> None:
        self.via = via
        self.log = log
        self.read_desired = read_desired
        self.boxes = boxes
        self.warn = warn

    def begin(self, argv: Sequence[str], secrets: Iterable[str] = ()) -> Started:
        return begin(self.via, argv, self._desired(), secrets)

    def end(self, started: Started, exc: BaseException | None,
            code: int = 0) -> audit.Record | None:
        """The record written; None (after a warning) when the log could not be written:
        the change has happened by then, and saying so beats a traceback."""
        result, message = outcome(exc, code)
        try:
            return finish(started, result, message, self._desired(), self.log,
                          self._boxes())
        except OSError as exc_log:
            self.warn(f"the audit log {self.log.path} could not be written: "
                      f"{exc_log.strerror or exc_log}")
            return None

    def _desired(self) -> str | None:
        try:
            return self.read_desired()
        except (IscsihaError, OSError):
            return None

    def _boxes(self) -> Boxes | None:
        try:
            return self.boxes()
        except IscsihaError:
            return None


def records(log: AuditLog, since: datetime | None = None) -> Iterator[audit.Record | None]:
    """Each record of this box's log from ``since`` on, oldest first; None for a line
    that cannot be read (a damaged or foreign line)."""
    for raw in log.lines():
        rec = audit.parse(raw)
        if rec is None:
            yield None
        elif audit.since_ok(rec, since):
            yield rec
