"""The audit log's records (pure): who changed what, through which command, with what
result, and the desired state's diff, every secret replaced.

A record is one JSON object on one line (ASCII: control characters, non-UTF-8 bytes
and newlines are escaped by the encoder, so a hostile value can never split or forge
a line); every field is bounded. The file is written by iscsiha.executors.audit_log.
"""

from __future__ import annotations

import difflib
import json
import re
import shlex
import tomllib
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import asdict, dataclass, fields
from datetime import UTC, datetime
from typing import Any, Literal, get_args

from iscsiha.errors import IscsihaError, clip
from iscsiha.model.fields import is_secret_key

Result = Literal["ok", "refused", "failed"]
Via = Literal["cli", "console"]
COMMAND_MAX = 4000
MESSAGE_MAX = 4000
DIFF_MAX = 256 * 1024
FIELD_MAX = 256  # user, box, source, peer
SECRET_SHOWN = "<secret>"
SECRET_CHANGED = "<secret, changed>"
# `--bmc-password X`, `--token=X`, `secret=X`: the value after a secret-looking name.
_NAMED = re.compile(r"^(--?[\w-]*(?:secret|password|token|passphrase)[\w-]*)$", re.I)
_ASSIGNED = re.compile(r"^([\w.-]*(?:secret|password|token|passphrase)[\w.-]*)=(.*)$",
                       re.I | re.S)


@dataclass(frozen=True)
class Who:
    user: str
    source: str | None  # the SSH client's address, when the command came over SSH


@dataclass(frozen=True)
class Record:
    time: str  # UTC, ISO 8601
    box: str
    user: str
    source: str | None
    via: Via
    command: str  # as typed, secrets replaced
    result: Result
    message: str
    diff: str  # the desired state's unified diff, secrets replaced; "" when unchanged
    peer: str = ""  # what became of the peer's copy
    copy_from: str | None = None  # set on the peer's copy: the box that sent it


def who(env: Mapping[str, str], login: str | None, user: str) -> Who:
    """The person behind the command: sudo's caller, else the login name, else the
    process's user; the SSH client's address when there is one (SSH_CONNECTION's
    first word)."""
    name = env.get("SUDO_USER") or login or user
    ssh = env.get("SSH_CONNECTION", "").split()
    return Who(text(name, FIELD_MAX, ""), text(ssh[0], FIELD_MAX, "") if ssh else None)


def now_utc(clock: float) -> str:
    return datetime.fromtimestamp(clock, UTC).isoformat(timespec="seconds")


def text(value: str, limit: int, keep: str = "\n\t") -> str:
    """``value`` as valid UTF-8 (bytes Python could not decode become U+FFFD), control
    characters but those in ``keep`` escaped (\\xNN), clipped."""
    valid = value.encode("utf-8", "surrogateescape").decode("utf-8", "replace")
    return clip(_printable(valid, keep), limit)


def secrets_in(toml_texts: Iterable[str | None]) -> set[str]:
    """Every secret value in these desired states (a text that is no TOML gives none)."""
    found: set[str] = set()
    for doc in toml_texts:
        if doc:
            try:
                _collect(tomllib.loads(doc), found)
            except tomllib.TOMLDecodeError:
                continue
    return found


def _collect(value: Any, found: set[str], secret: bool = False) -> None:
    if isinstance(value, dict):
        for k, v in value.items():
            _collect(v, found, secret or is_secret_key(str(k)))
    elif isinstance(value, list):
        for v in value:
            _collect(v, found, secret)
    elif secret and isinstance(value, str) and value:
        found.add(value)


def redact_argv(argv: Sequence[str], secrets: Iterable[str]) -> str:
    """The command line as typed (shell-quoted), with the value of every secret-looking
    option or key=value and every known secret value replaced."""
    out: list[str] = []
    hide_next = False
    for word in argv:
        if hide_next:
            out.append(SECRET_SHOWN if word != "-" else word)
            hide_next = False
            continue
        assigned = _ASSIGNED.match(word)
        if assigned and assigned.group(2) not in ("", "-"):
            word = f"{assigned.group(1)}={SECRET_SHOWN}"
        elif _NAMED.match(word):
            hide_next = True
        out.append(word)
    return text(_replace(shlex.join(out), secrets), COMMAND_MAX)


def redact_text(value: str, secrets: Iterable[str]) -> str:
    return _replace(value, secrets)


def _replace(value: str, secrets: Iterable[str], shown: str = SECRET_SHOWN) -> str:
    # Longest first, so a secret holding a shorter one is replaced whole; each also as
    # TOML or JSON would escape it.
    for secret in sorted({s for s in secrets if s}, key=len, reverse=True):
        for form in {secret, json.dumps(secret)[1:-1], shlex.quote(secret)}:
            value = value.replace(form, shown)
    return value


def desired_diff(before: str | None, after: str | None) -> str:
    """A unified diff of the desired state, each secret replaced; a secret the change
    set anew shows as changed (never its value)."""
    if before == after:
        return ""
    old = secrets_in([before])
    new = secrets_in([after]) - old
    a = _replace(before or "", old)
    b = _replace(_replace(after or "", new, SECRET_CHANGED), old)
    diff = "".join(difflib.unified_diff(a.splitlines(keepends=True),
                                        b.splitlines(keepends=True),
                                        "desired.toml (before)", "desired.toml (after)"))
    return text(diff, DIFF_MAX)


def record(*, clock: float, box: str, person: Who, via: Via, argv: Sequence[str],
           result: Result, message: str, before: str | None, after: str | None,
           secrets: Iterable[str] = ()) -> Record:
    """One record; ``secrets``: values to hide besides those of the two desired states
    (a secret the command was given)."""
    hidden = secrets_in([before, after]) | set(secrets)
    return Record(
        time=now_utc(clock), box=text(box, FIELD_MAX, ""), user=person.user, source=person.source,
        via=via, command=redact_argv(argv, hidden), result=result,
        message=text(redact_text(message, hidden), MESSAGE_MAX),
        diff=desired_diff(before, after))


def line(rec: Record) -> bytes:
    """The record as one line of the log: ASCII JSON, newline-terminated."""
    return (json.dumps(asdict(rec), ensure_ascii=True, sort_keys=False) + "\n").encode()


def parse(raw: bytes) -> Record | None:
    """A line of the log back as a record; None for a line this version cannot read."""
    try:
        data = json.loads(raw)
    except ValueError:
        return None
    if not isinstance(data, dict):
        return None
    names = {f.name for f in fields(Record)}
    kept = {k: v for k, v in data.items() if k in names}
    try:
        rec = Record(**kept)
    except TypeError:
        return None
    strings = [rec.time, rec.box, rec.user, rec.via, rec.command, rec.result, rec.message,
               rec.diff, rec.peer]
    optional = [rec.source, rec.copy_from]
    if not all(isinstance(s, str) for s in strings) or not all(
            s is None or isinstance(s, str) for s in optional):
        return None
    if rec.via not in get_args(Via) or rec.result not in get_args(Result):
        return None
    return rec


def parse_since(value: str | None, field: str) -> datetime | None:
    """A --since or since= value: an ISO date or time, UTC unless it gives an offset."""
    if value is None:
        return None
    try:
        when = datetime.fromisoformat(value)
    except ValueError:
        raise IscsihaError.single("bad-time", field, value,
                                  "an ISO date or time: 2026-12-01 or 2026-12-01T08:00 "
                                  "(UTC unless it gives an offset)") from None
    return when if when.tzinfo else when.replace(tzinfo=UTC)


def since_ok(rec: Record, since: datetime | None) -> bool:
    if since is None:
        return True
    try:
        return datetime.fromisoformat(rec.time) >= since
    except (ValueError, TypeError):  # not a time, or one without its offset
        return False


def shown(rec: Record) -> str:
    """A record for `iscsiha audit`: a head line, then its message and diff indented."""
    where = f"{rec.user}" + (f" from {rec.source}" if rec.source else "")
    copy = f" (copy from {rec.copy_from})" if rec.copy_from else ""
    head = f"{rec.time} {rec.box}{copy} {where} {rec.via}: {rec.command} -> {rec.result}"
    out = [_printable(head, "")]
    if rec.message:
        out.append("    " + _printable(rec.message).replace("\n", "\n    "))
    if rec.peer:
        out.append(f"    peer: {_printable(rec.peer)}")
    out += ["    " + _printable(d) for d in rec.diff.splitlines()]
    return "\n".join(out)


def _printable(value: str, keep: str = "\n") -> str:
    """No control character reaches the admin's terminal (a logged value is hostile)."""
    return "".join(c if c.isprintable() or c in keep else f"\\x{ord(c):02x}" for c in value)
