"""`iscsiha support-bundle`: both boxes' state and logs in one .tar.gz, secrets removed.

This box collects its own part (iscsiha.commands.support_box) and asks the other box
for its part over the cluster's SSH channel (the `support-part` node step); a box that
does not answer is written into the bundle's README.txt, not fatal. The peer redacts
its part with its own secrets and this box redacts it again with its own: either
box's secrets stay out even when the two boxes' desired states differ.
"""

from __future__ import annotations

import base64
import binascii
import io
import re
import tarfile
import time
import zlib
from collections.abc import Callable
from typing import TYPE_CHECKING

from iscsiha.commands.support_box import BoxPaths, archive, collect
from iscsiha.errors import IscsihaError
from iscsiha.executors import files
from iscsiha.model.journal_time import SINCE_ALLOWED, journal_since
from iscsiha.protocol import messages as m
from iscsiha.redaction import Redactor

if TYPE_CHECKING:  # cluster_env imports node_steps, which serves this module's step
    from iscsiha.commands.cluster_env import Boxes

DEFAULT_SINCE = "2d"
DEFAULT_FOLDER = "/var/tmp"
BUNDLE_MODE = 0o600
PEER_TIMEOUT = 300.0  # its commands each have their own bound; this is the whole part's
MEMBERS_MAX = 1000
UNPACKED_MAX = 512 * 1024 * 1024
_MEMBER = re.compile(r"[A-Za-z0-9_.+-]+(?:/[A-Za-z0-9_.+-]+){0,8}", re.A)

Progress = Callable[[str], None]


def checked_since(value: str) -> str:
    """journalctl's form of ``value``; IscsihaError when it is not one SINCE_ALLOWED."""
    since = journal_since(value)
    if since is None:
        raise IscsihaError.single("bad-since", "since", value, SINCE_ALLOWED)
    return since


def default_output(node: str, now: float) -> str:
    return (f"{DEFAULT_FOLDER}/iscsiha-support-{node}-"
            f"{time.strftime('%Y%m%d-%H%M%S', time.localtime(now))}.tar.gz")


def make(box: BoxPaths, boxes: Boxes | None, since: str, progress: Progress) -> bytes:
    """The bundle: NODE/... for each box that answered, README.txt saying what is in it."""
    journal = checked_since(since)
    own = collect(box, journal, progress)
    members = {f"{own.node}/{name}": data for name, data in own.files.items()}
    lines = [f"iscsiha support bundle made on {own.node}, journal since {since}",
             f"{own.node}: {len(own.files)} files"]
    if boxes is None:
        lines.append("the other box: not asked (this box has no desired state naming it)")
    for peer in [] if boxes is None else [n for n in boxes.names if n != own.node]:
        assert boxes is not None
        progress(f"asking {peer} for its part (at most {PEER_TIMEOUT:.0f} s)")
        got, line = _peer_part(boxes, peer, since, own.redactor)
        members.update({f"{peer}/{name}": data for name, data in got.items()})
        lines.append(line)
        if not got:
            progress(line)
    lines.append("Every secret either box knows is replaced by [redacted] (docs/support.md); "
                 "key files are not collected.")
    members["README.txt"] = ("\n".join(lines) + "\n").encode()
    return archive(members, box.wall_clock())


def _peer_part(boxes: Boxes, peer: str, since: str,
               redactor: Redactor) -> tuple[dict[str, bytes], str]:
    """The peer's files, redacted again here, and the README line about them."""
    try:
        reply = boxes.call(peer, m.SUPPORT_PART, m.SupportRequest(since), timeout=PEER_TIMEOUT)
        got = unpack(reply.archive, peer)
    except IscsihaError as exc:
        why = "; ".join(f"{r.field} {r.value}: {r.message or r.code}" for r in exc.reports)
        return {}, f"{peer}: no part: {redactor.redact_text(why)}"
    return {name: redactor.redact(data) for name, data in got.items()}, f"{peer}: {len(got)} files"


def part(box: BoxPaths, req: m.SupportRequest) -> m.SupportPart:
    """The node step: this box's part for the box making a bundle."""
    collected = collect(box, checked_since(req.since), lambda _message: None)
    data = base64.b64encode(archive(collected.files, box.wall_clock())).decode()
    if len(data) > m.ARCHIVE_B64_MAX:
        raise IscsihaError.single("support-part-too-large", "support part", f"{len(data)} bytes",
                                  f"at most {m.ARCHIVE_B64_MAX} bytes of base64",
                                  "use a later --since")
    return m.SupportPart(collected.node, data)


def unpack(data: str, node: str) -> dict[str, bytes]:
    """The files of a part another box sent: regular files with plain relative names,
    bounded in number and size; IscsihaError for anything else."""
    where = f"{node}'s support part"

    def refuse(value: object, allowed: str, why: str = "left out") -> IscsihaError:
        return IscsihaError.single("bad-support-part", where, value, allowed, why)

    try:
        raw = base64.b64decode(data, validate=True)
        found: dict[str, bytes] = {}
        total = 0
        with tarfile.open(fileobj=io.BytesIO(raw), mode="r:gz") as tar:
            for info in tar:
                if not info.isfile() or not _MEMBER.fullmatch(info.name) or ".." in info.name:
                    raise refuse(info.name[:100], "regular files with relative names")
                total += info.size
                if len(found) >= MEMBERS_MAX or total > UNPACKED_MAX:
                    raise refuse(f"{len(found) + 1} files, {total} bytes",
                                 f"at most {MEMBERS_MAX} files and {UNPACKED_MAX} bytes")
                extracted = tar.extractfile(info)
                found[info.name] = extracted.read() if extracted else b""
    except (binascii.Error, tarfile.TarError, EOFError, OSError, zlib.error) as exc:
        raise refuse("archive", "a .tar.gz", f"cannot be read: {exc}") from None
    return found


def write(path: str, data: bytes) -> None:
    """The bundle at ``path``, readable by root only."""
    try:
        files.write_atomic(path, data, BUNDLE_MODE)
    except OSError as exc:
        raise IscsihaError.single("unwritable-file", "output", path, "a file root may write",
                                  exc.strerror or str(exc)) from exc
