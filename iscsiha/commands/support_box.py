"""One box's part of a support bundle: what a maintainer needs, with every secret gone.

Each command runs with its own timeout and a failure is written into the part, never
fatal. Secrets are gathered on the box itself (the desired state's typed Secrets, the
cluster key and the DRBD secrets derived from it, Pacemaker's lrm:// store, secret
parameters in the CIB and CHAP in LIO) and removed from every file before it is
archived; key files are never read into the part at all.
"""

from __future__ import annotations

import io
import json
import os
import tarfile
import time
import xml.etree.ElementTree as ET
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Protocol

from iscsiha import __version__, audit
from iscsiha.errors import IscsihaError
from iscsiha.executors.audit_log import AUDIT_DIR, AUDIT_NAME
from iscsiha.executors.lio import Lio
from iscsiha.model.load import load_text
from iscsiha.model.types import Config
from iscsiha.plan.drbd import AUTHKEY_PATH, peer_secret
from iscsiha.plan.peer_ssh import ISCSIHA, SSH_DIR
from iscsiha.redaction import Redactor, model_secrets, named_values

if TYPE_CHECKING:  # cluster_env imports node_steps, which serves this module's step
    from iscsiha.commands.cluster_env import RunsCommands

FILE_BYTES_MAX = 8 * 1024 * 1024  # one collected file; a longer one keeps its end
JOURNAL_LINES = 100_000
UNITS = ("corosync", "corosync-qdevice", "pacemaker", "iscsiha-*", "drbd*", "sbd",
         "systemd-networkd", "ssh")
# Never read into a bundle, whatever a later change adds to FILES.
NEVER = (AUTHKEY_PATH, SSH_DIR, "/etc/ssh/", "/etc/pacemaker/authkey",
         "/var/lib/pacemaker/lrm/secrets", "/etc/corosync/qdevice/net/nssdb",
         "/etc/corosync/qnetd/nssdb")
FILES = ("/etc/os-release", "/proc/drbd", "/etc/corosync/corosync.conf",
         "/etc/drbd.d/global_common.conf", "/etc/rtslib-fb-target/saveconfig.json",
         # Who changed what (secrets already replaced there; redacted again all the same).
         os.path.join(AUDIT_DIR, AUDIT_NAME))
QDEVICE_PWDFILE = "/etc/corosync/qdevice/net/nssdb/pwdfile.txt"  # its value, not the file


@dataclass(frozen=True)
class Command:
    name: str  # the file it goes to in the part
    argv: tuple[str, ...]
    timeout: float = 30.0


def commands(since: str) -> tuple[Command, ...]:
    """``since`` is journalctl's form (iscsiha.model.journal_time.journal_since)."""
    units = [a for u in UNITS for a in ("-u", u)]
    journal = ("/usr/bin/journalctl", "--no-pager", "-o", "short-iso-precise",
               f"--since={since}", f"--lines={JOURNAL_LINES}")
    return (
        Command("pacemaker/crm_mon.txt", ("/usr/sbin/crm_mon", "-1", "-r", "-f", "-A", "-t")),
        Command("pacemaker/cib.xml", ("/usr/sbin/cibadmin", "--query")),
        Command("pacemaker/stonith-history.txt",
                ("/usr/sbin/stonith_admin", "--history", "*", "--verbose")),
        Command("pacemaker/crm_verify.txt", ("/usr/sbin/crm_verify", "--live-check", "-V")),
        Command("pacemaker/pacemaker.log",
                ("/usr/bin/tail", "-n", str(JOURNAL_LINES), "/var/log/pacemaker/pacemaker.log")),
        Command("corosync/quorumtool.txt", ("/usr/sbin/corosync-quorumtool", "-s")),
        Command("corosync/cfgtool.txt", ("/usr/sbin/corosync-cfgtool", "-s")),
        Command("corosync/qdevice-tool.txt", ("/usr/sbin/corosync-qdevice-tool", "-sv")),
        Command("drbd/status.txt", ("/usr/sbin/drbdadm", "status", "all")),
        Command("drbd/drbdsetup-show.txt", ("/usr/sbin/drbdsetup", "show")),
        Command("lio/targetcli-ls.txt", ("/usr/bin/targetcli", "ls")),
        Command("lvm/lvs.txt", ("/usr/sbin/lvs", "-a", "-o", "+lv_tags,devices")),
        Command("lvm/vgs.txt", ("/usr/sbin/vgs",)),
        Command("network/addresses.txt", ("/usr/bin/ip", "-d", "address")),
        Command("network/routes.txt", ("/usr/bin/ip", "route", "show", "table", "all")),
        Command("network/nft-ruleset.txt", ("/usr/sbin/nft", "list", "ruleset")),
        Command("journal/units.txt", (*journal, *units), timeout=90.0),
        Command("journal/kernel.txt", (*journal, "-k"), timeout=90.0),
        Command("versions/uname.txt", ("/usr/bin/uname", "-a")),
        Command("versions/packages.txt",
                ("/usr/bin/dpkg-query", "-W", "-f", "${Package}\\t${Version}\\n")),
        Command("status.json", (ISCSIHA, "status", "--json"), timeout=60.0),
    )


class BoxPaths(Protocol):
    """Where this box keeps what a part reads (iscsiha.commands.node_steps.Box)."""

    @property
    def runner(self) -> RunsCommands: ...

    @property
    def read_bytes(self) -> Callable[[str], bytes | None]: ...

    @property
    def desired_path(self) -> str: ...

    @property
    def secrets_dir(self) -> str: ...

    @property
    def drbd_dir(self) -> str: ...

    @property
    def hostname(self) -> Callable[[], str]: ...

    @property
    def wall_clock(self) -> Callable[[], float]: ...


@dataclass(frozen=True)
class Part:
    node: str
    files: dict[str, bytes]  # name -> content, already redacted
    redactor: Redactor  # this box's secrets, to redact the peer's part again


Progress = Callable[[str], None]


def collect(box: BoxPaths, since: str, progress: Progress,
            lio_dump: Callable[[], dict[str, Any]] | None = None) -> Part:
    """This box's part; ``since`` in journalctl's form."""
    node = box.hostname()
    raw: dict[str, bytes] = {}
    log: list[str] = []
    for cmd in commands(since):
        progress(f"{node}: {cmd.name}")
        raw[cmd.name], line = _run(box.runner, cmd)
        log.append(line)
    for path in (*FILES, box.desired_path, *_resource_files(box.drbd_dir)):
        data = _read(box.read_bytes, path)
        if data is not None:
            raw[f"files{path}"] = data
    lio: dict[str, Any] | None = None
    try:
        lio = (lio_dump or Lio().dump)()
        raw["lio/rtslib-dump.json"] = json.dumps(lio, indent=2, sort_keys=True).encode()
    except IscsihaError as exc:
        raw["lio/rtslib-dump.json"] = f"(not read: {exc})\n".encode()
    secrets = box_secrets(box, raw.get("pacemaker/cib.xml", b""), lio)
    redactor = Redactor(secrets)
    progress(f"{node}: redacting {len(raw)} files ({redactor.count} secrets known)")
    raw["commands.txt"] = "\n".join(log).encode() + b"\n"
    when = time.strftime("%Y-%m-%dT%H:%M:%S%z", time.localtime(box.wall_clock()))
    raw["versions/iscsiha.txt"] = (
        f"iscsiha {__version__}\ncollected {when}\n"
        f"secrets redacted by value: {redactor.count - redactor.too_short}\n"
        f"secrets too short to redact by value (redacted where named): "
        f"{redactor.too_short}\n").encode()
    return Part(node, {name: redactor.redact(data) for name, data in raw.items()}, redactor)


def _run(runner: RunsCommands, cmd: Command) -> tuple[bytes, str]:
    """The command's output (stderr after stdout) and its line for commands.txt."""
    shown = " ".join(cmd.argv)
    try:
        result = runner.run(list(cmd.argv), check=False, timeout=cmd.timeout)
    except IscsihaError as exc:  # missing, timed out, not text: say so in the part
        why = "; ".join(r.message or r.code for r in exc.reports)
        return f"(not collected: {why})\n".encode(), f"{cmd.name}: {shown}: {why}"
    out = result.stdout + (f"\n--- stderr ---\n{result.stderr}" if result.stderr else "")
    return (_bounded(out.encode()),
            f"{cmd.name}: {shown}: exit {result.returncode} in {result.seconds:.1f} s")


def _bounded(data: bytes) -> bytes:
    if len(data) <= FILE_BYTES_MAX:
        return data
    return (f"(the first {len(data) - FILE_BYTES_MAX} bytes left out)\n".encode()
            + data[-FILE_BYTES_MAX:])


def forbidden(path: str) -> bool:
    real = os.path.realpath(path)
    return any(p == n or p.startswith(n.rstrip("/") + "/") for p in (path, real) for n in NEVER)


def _read(read: Callable[[str], bytes | None], path: str) -> bytes | None:
    if forbidden(path):
        return None
    try:
        data = read(path)
    except OSError as exc:
        return f"(not read: {exc.strerror or exc})\n".encode()
    return None if data is None else _bounded(data)


def _resource_files(folder: str) -> list[str]:
    try:
        return sorted(os.path.join(folder, n) for n in os.listdir(folder) if n.endswith(".res"))
    except OSError:
        return []


# -- this box's secrets -----------------------------------------------------------------

def box_secrets(box: BoxPaths, cib: bytes, lio: dict[str, Any] | None) -> set[str | bytes]:
    """Every secret this box holds or shows, by value."""
    found: set[str | bytes] = set()
    desired = _quiet_read(box.read_bytes, box.desired_path)
    config = _config(desired)
    if config is not None:
        found |= model_secrets(config)
    if desired:  # also those of a desired state the model refuses, by their keys
        found |= audit.secrets_in([desired.decode("utf-8", "replace")])
    key = _quiet_read(box.read_bytes, AUTHKEY_PATH)
    if key:
        found.add(key)
        names = {os.path.basename(p)[:-len(".res")] for p in _resource_files(box.drbd_dir)}
        names |= {t.name for t in config.targets} if config is not None else set()
        found |= {peer_secret(key, n) for n in names}
    found |= _lrm_store(box.read_bytes, box.secrets_dir)
    pwd = _quiet_read(box.read_bytes, QDEVICE_PWDFILE)
    if pwd and pwd.strip():
        found.add(pwd.strip().decode("utf-8", "surrogateescape"))
    found |= named_values(_cib_pairs(cib))
    if lio is not None:
        found |= named_values(_pairs(lio))
    return found


def _quiet_read(read: Callable[[str], bytes | None], path: str) -> bytes | None:
    try:
        return read(path)
    except OSError:
        return None


def _config(desired: bytes | None) -> Config | None:
    if not desired:
        return None
    try:
        return load_text(desired.decode(), "desired state")
    except (IscsihaError, UnicodeDecodeError):  # then its secrets by key name only
        return None


def _pairs(data: Any) -> Iterator[tuple[str, object]]:
    """(key, value) of every table entry at any depth."""
    stack = [data]
    while stack:
        item = stack.pop()
        if isinstance(item, dict):
            for k, v in item.items():
                yield str(k), v
                stack.append(v)
        elif isinstance(item, list):
            stack += item


def _cib_pairs(cib: bytes) -> Iterator[tuple[str, object]]:
    try:
        root = ET.fromstring(cib)
    except (ET.ParseError, ValueError):
        return
    for pair in root.iter("nvpair"):
        yield pair.get("name", ""), pair.get("value")


def _lrm_store(read: Callable[[str], bytes | None], top: str) -> set[str | bytes]:
    """Pacemaker's lrm:// values and their MD5s (RSC/PARAM and RSC/PARAM.sign)."""
    found: set[str | bytes] = set()
    try:
        rscs = os.listdir(top)
    except OSError:
        return found
    for rsc in rscs:
        try:
            params = os.listdir(os.path.join(top, rsc))
        except OSError:
            continue
        for param in params:
            value = _quiet_read(read, os.path.join(top, rsc, param))
            if value:
                found.add(value.rstrip(b"\n").decode("utf-8", "surrogateescape"))
    return found


# -- archives ---------------------------------------------------------------------------

def archive(members: dict[str, bytes], mtime: float) -> bytes:
    """A .tar.gz of regular files, owned by root, mode 0600."""
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w:gz") as tar:
        for name, data in members.items():
            info = tarfile.TarInfo(name)
            info.size, info.mode, info.mtime = len(data), 0o600, int(mtime)
            tar.addfile(info, io.BytesIO(data))
    return buf.getvalue()
