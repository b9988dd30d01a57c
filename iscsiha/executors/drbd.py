"""DRBD resources, via drbdadm and the runner (8.4 kernel module, drbd-utils 9).

With the 8.4 module drbd-utils runs its 8.4 tools (drbdadm-84, drbdsetup-84): no
`drbdsetup status --json`, and a StandAlone resource has no connection or peer
device in `drbdsetup status` at all (the kernel lists only connections with a
network config), so a split brain's out-of-sync count is read from /proc/drbd.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass

from iscsiha.errors import IscsihaError
from iscsiha.executors import files
from iscsiha.executors.runner import Runner
from iscsiha.model.load import LUN_MAX

DRBDADM = "/usr/sbin/drbdadm"
DRBDSETUP = "/usr/sbin/drbdsetup"
DMESG = "/usr/bin/dmesg"
PROC_DRBD = "/proc/drbd"
NO_METADATA = "No valid meta data found"  # drbdmeta, on a disk never given metadata
# Connection states in which the two sides talk (8.4's drbd_conn_str names).
CONNECTED = frozenset({
    "Connected", "StartingSyncS", "StartingSyncT", "WFBitMapS", "WFBitMapT", "WFSyncUUID",
    "SyncSource", "SyncTarget", "VerifyS", "VerifyT", "PausedSyncS", "PausedSyncT"})


@dataclass(frozen=True)
class DrbdState:
    role: str  # this box's: Primary, Secondary, or Unconfigured when down
    connection: str  # Connected, WFConnection, StandAlone...
    disk: str  # this box's: UpToDate, Inconsistent...
    peer_disk: str


DOWN = DrbdState("Unconfigured", "StandAlone", "Diskless", "DUnknown")


class Drbd:
    """drbdadm on named resources; every name goes after ``--`` so none reads as an option."""

    def __init__(self, runner: Runner, read: Callable[[str], str] = files.read_text) -> None:
        """``read`` reads a kernel file (/proc/drbd); tests hand in their own."""
        self._runner = runner
        self._read = read

    def create_md(self, res: str) -> None:
        self._runner.run([DRBDADM, "--force", "create-md", "--", res], timeout=120)

    def has_metadata(self, volume: str) -> bool:
        """Whether RES/NUMBER's disk holds DRBD metadata; raises when that is unknown."""
        if self._runner.run([DRBDADM, "get-gi", "--", volume], check=False, timeout=30).ok:
            return True  # attached, or metadata drbdmeta reads
        # get-gi says nothing about a disk without metadata; dump-md says so.
        result = self._runner.run([DRBDADM, "dump-md", "--", volume], check=False, timeout=60)
        if NO_METADATA in result.stdout + result.stderr:
            return False
        raise IscsihaError.single("drbd-metadata-unknown", "volume", volume,
                                  "a disk drbdmeta can read",
                                  (result.stderr or result.stdout).strip()[-300:])

    def primary(self, res: str) -> None:
        self._runner.run([DRBDADM, "primary", "--", res], timeout=60)

    def up(self, res: str) -> None:
        self._runner.run([DRBDADM, "up", "--", res], timeout=60)

    def down(self, res: str) -> None:
        self._runner.run([DRBDADM, "down", "--", res], timeout=60)

    def skip_initial_sync(self, res: str) -> None:
        """Declare both sides' (zeroed, never written) data identical: no full sync."""
        self._runner.run([DRBDADM, "--clear-bitmap", "new-current-uuid", "--", res], timeout=60)

    def adjust(self, res: str) -> None:
        """Bring a running resource in line with its file (options, peer secret, volumes).

        drbd-utils 9.22's adjust of an 8.4 resource drops one removed volume per call
        (seen in the lab: 63 removed, one `del-minor` each time), so it runs again while
        its dry run still drops one, at most once per volume a target can have.
        """
        rounds = LUN_MAX + 1  # a target's most volumes
        for _ in range(rounds):
            self._runner.run([DRBDADM, "adjust", "--", res], timeout=60)
            if "del-minor" not in self._runner.run([DRBDADM, "-d", "adjust", "--", res],
                                                   timeout=60).stdout:
                return
        raise IscsihaError.single("drbd-adjust-incomplete", "resource", res,
                                  "a resource whose removed volumes drbdadm adjust drops",
                                  f"still dropping volumes after {rounds} rounds")

    def resize(self, res: str) -> None:
        self._runner.run([DRBDADM, "resize", "--", res], timeout=120)

    def state(self, res: str) -> DrbdState:
        role = self._query("role", res)
        if role is None:
            return DOWN
        disk = self._query("dstate", res) or "Diskless/DUnknown"
        return DrbdState(role.split("/")[0], self._query("cstate", res) or "StandAlone",
                         *[*disk.split("/"), "DUnknown"][:2])

    def _query(self, what: str, res: str) -> str | None:
        """The answer for the resource's first volume the kernel knows (drbdadm prints
        one line per volume, and fails for a volume not yet added to the kernel)."""
        result = self._runner.run([DRBDADM, what, "--", res], check=False, timeout=30)
        for line in result.stdout.splitlines():
            if re.fullmatch(r"[A-Za-z]+(/[A-Za-z]+)?", line.strip()):
                return line.strip()
        return None

    # -- split brain -------------------------------------------------------------------

    def detail(self, res: str, minor: int, proc: Mapping[int, ProcDevice],
               kernel: str) -> DrbdDetail:
        """``res`` (device ``minor``) from one read of /proc/drbd and the kernel log."""
        dev = proc.get(minor, UNCONFIGURED)
        return DrbdDetail(dev.role, dev.peer_role, dev.connection, dev.disk, dev.peer_disk,
                          dev.out_of_sync_kib, dev.synced_percent, dev.resync_total_kib,
                          self.generation_ids(res) if dev.role != "Unconfigured" else None,
                          tuple(kernel_lines(kernel, minor)))

    def proc(self) -> dict[int, ProcDevice]:
        return parse_proc_drbd(self.proc_text())

    def proc_text(self) -> str:
        return self._read(PROC_DRBD)

    def show(self) -> str:
        """The resources the kernel runs, as `drbdsetup show` prints them."""
        return self._runner.run([DRBDSETUP, "show"], timeout=30).stdout

    def verify(self, res: str) -> None:
        """Start online verify of every volume of ``res`` (it runs in the kernel)."""
        self._runner.run([DRBDADM, "verify", "--", res], timeout=60)

    def kernel_log(self) -> str:
        """The kernel's ring buffer, where DRBD says why it dropped a connection."""
        result = self._runner.run([DMESG], check=False, timeout=30)
        return result.stdout if result.ok else ""

    def generation_ids(self, res: str) -> GenerationIds | None:
        result = self._runner.run([DRBDADM, "get-gi", "--", res], check=False, timeout=30)
        return parse_gi(result.stdout) if result.ok else None

    def disconnect(self, res: str) -> None:
        self._runner.run([DRBDADM, "disconnect", "--", res], timeout=60)

    def secondary(self, res: str) -> None:
        self._runner.run([DRBDADM, "secondary", "--", res], timeout=60)

    def connect(self, res: str, discard_my_data: bool = False) -> None:
        """Connect to the peer; ``discard_my_data`` makes this side the split brain's loser."""
        flag = ["--discard-my-data"] if discard_my_data else []
        self._runner.run([DRBDADM, "connect", *flag, "--", res], timeout=60)


@dataclass(frozen=True)
class ProcDevice:
    """One minor's lines in /proc/drbd (8.4's drbd_proc.c)."""

    connection: str
    role: str
    peer_role: str
    disk: str
    peer_disk: str
    out_of_sync_kib: int  # oos: the bitmap's weight, in KiB (4 KiB per bit)
    synced_percent: float | None = None  # "sync'ed:" while a resync runs
    resync_total_kib: int | None = None  # what this resync set out to copy
    finish_seconds: int | None = None  # the kernel's estimate of the resync's time left


UNCONFIGURED = ProcDevice("StandAlone", "Unconfigured", "Unknown", "Diskless", "DUnknown", 0)

# ASCII: \d also matches digits such as '٣', which int() reads as 3.
_DEVICE = re.compile(r"^ *(\d+): cs:(\w+)(?: ro:(\w+)/(\w+) ds:(\w+)/(\w+))?", re.M | re.A)
_PROGRESS = re.compile(r"sync'ed: *(\d+(?:\.\d+)?)% \((\d+)/(\d+)\)([KM])", re.A)
_FINISH = re.compile(r"\bfinish: (\d+):(\d+):(\d+)", re.A)


def parse_proc_drbd(text: str) -> dict[int, ProcDevice]:
    """Minor -> its state; a minor shown as "cs:Unconfigured" is not configured."""
    found: dict[int, ProcDevice] = {}
    starts = list(_DEVICE.finditer(text))
    for i, m in enumerate(starts):
        block = text[m.start():starts[i + 1].start() if i + 1 < len(starts) else len(text)]
        if m.group(2) == "Unconfigured" or m.group(3) is None:
            found[int(m.group(1))] = UNCONFIGURED
            continue
        oos = re.search(r"\boos:(\d+)", block, re.A)
        progress = _PROGRESS.search(block)
        total = None
        if progress:  # "M" when the resync is over 4 GiB: (left/total) in MiB, not KiB
            total = int(progress.group(3)) * (1024 if progress.group(4) == "M" else 1)
        finish = _FINISH.search(block) if progress else None
        found[int(m.group(1))] = ProcDevice(
            m.group(2), m.group(3), m.group(4), m.group(5), m.group(6),
            int(oos.group(1)) if oos else 0,
            float(progress.group(1)) if progress else None, total,
            int(finish.group(1)) * 3600 + int(finish.group(2)) * 60 + int(finish.group(3))
            if finish else None)
    return found


@dataclass(frozen=True)
class GenerationIds:
    """A disk's data generation identifiers, as `drbdadm get-gi` prints them.

    DRBD starts a new current identifier when a Primary loses its peer or a box is
    promoted alone, moving the old one to the bitmap slot: the bitmap identifier is
    where this side's tracked changes began.
    """

    current: str
    bitmap: str
    history: tuple[str, str]
    flags: str  # consistent:was-up-to-date:primary:connected:full-sync:peer-outdated:crashed

    def ids(self) -> tuple[int, int, int, int]:
        """current, bitmap, history1, history2 without bit 0 (DRBD's "was Primary" mark)."""
        current, bitmap, newer, older = (int(x, 16) & ~1
                                         for x in (self.current, self.bitmap, *self.history))
        return current, bitmap, newer, older


_GI = re.compile(r"^([0-9A-F]{16}):([0-9A-F]{16}):([0-9A-F]{16}):([0-9A-F]{16}):"
                 r"([01](?::[01]){6})$", re.I | re.M | re.A)


def parse_gi(text: str) -> GenerationIds | None:
    """From get-gi's one line: 4 identifiers in hex, then 7 flags (drbd-utils' dt_print_uuids)."""
    m = _GI.search(text)
    if m is None:
        return None
    return GenerationIds(m.group(1).upper(), m.group(2).upper(),
                         (m.group(3).upper(), m.group(4).upper()), m.group(5))


def kernel_lines(text: str, minor: int, keep: int = 10) -> list[str]:
    """The kernel's split-brain and resync lines about device ``minor``, newest last."""
    pattern = re.compile(rf"\bdrbd{minor}: (?:Split-Brain detected|Began resync as)")
    return [line.strip() for line in text.splitlines() if pattern.search(line)][-keep:]


@dataclass(frozen=True)
class DrbdDetail:
    """One resource on one box, as split-brain recovery needs it."""

    role: str
    peer_role: str
    connection: str
    disk: str
    peer_disk: str
    out_of_sync_kib: int
    synced_percent: float | None
    resync_total_kib: int | None
    gi: GenerationIds | None
    kernel: tuple[str, ...]

    @property
    def connected(self) -> bool:
        return self.connection in CONNECTED
