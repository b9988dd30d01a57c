"""Every node step's request and reply: the one definition both boxes use.

The calling box builds a request, `iscsiha node STEP` on the other box decodes it with
iscsiha.protocol.codec (each field checked with the model's rules: names, sizes,
minors, ports) before anything runs, and the reply comes back the same way. Files and
secrets are never sent as paths or content: the receiving box rebuilds them from a
desired state it validates itself (see iscsiha.commands.node_steps).
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass
from typing import Annotated, Any, Generic, Literal, TypeVar

from iscsiha.model import names, pair_upgrade, root_image
from iscsiha.model.identity import RESERVATIONS_VOLUME
from iscsiha.model.journal_time import SINCE_ALLOWED, journal_since
from iscsiha.model.load import VOLUME_SIZE_MAX
from iscsiha.model.names import LUN_MAX
from iscsiha.protocol.codec import Check, Text, printable
from iscsiha.protocol.version import PROTOCOL_MAX
from iscsiha.timeline import PHASE_MAX, WALL_MAX

DESIRED_BYTES_MAX = 8 * 1024 * 1024
SECONDS_MAX = 3600.0


def _ok(problem: Callable[[Any], str | None]) -> Callable[[Any], bool]:
    """A model rule (None when the value is fine) as a check."""
    return lambda value: problem(value) is None


def _ref(s: str) -> bool:
    name, slash, number = s.partition("/")
    return (names.object_name_problem(name) is None and slash == "/"
            and (names.parse_decimal(number, 0, LUN_MAX) is not None
                 or number == str(RESERVATIONS_VOLUME)))


# A volume or target name (an LV, a DRBD resource, a CIB id).
Name = Annotated[str, Check(names.OBJECT_NAME_ALLOWED, _ok(names.object_name_problem))]
# An LVM volume group or LV name as lvm(8) allows it (never option-like).
LvmName = Annotated[str, Check(names.VG_NAME_ALLOWED, _ok(names.vg_name_problem))]
NodeName = Annotated[str, Check(names.NODE_NAME_ALLOWED, _ok(names.node_name_problem))]
# RESOURCE/NUMBER: one volume of a target's DRBD resource.
VolumeRef = Annotated[str, Check(f"TARGET/NUMBER, NUMBER 0 to {LUN_MAX} or "
                                 f"{RESERVATIONS_VOLUME} (the reservations)", _ref)]
Minor = Annotated[int, Check(names.DRBD_MINOR_ALLOWED, _ok(names.drbd_minor_problem))]
Port = Annotated[int, Check(names.DRBD_PORT_ALLOWED, _ok(names.drbd_port_problem))]
VolumeNumber = Annotated[int, Check(names.LUN_ALLOWED, _ok(names.lun_problem))]
Bytes = Annotated[int, Check(f"1 to {VOLUME_SIZE_MAX} bytes",
                             lambda n: 1 <= n <= VOLUME_SIZE_MAX)]
Count = Annotated[int, Check("0 or more", lambda n: 0 <= n < 1 << 63)]
Seconds = Annotated[float, Check(f"more than 0 and at most {SECONDS_MAX:.0f} seconds",
                                 lambda t: 0 < t <= SECONDS_MAX)]
IscsiName = Annotated[str, Check(names.ISCSI_NAME_ALLOWED, _ok(names.iscsi_name_problem))]
# A DRBD state word (Primary, Connected, UpToDate...).
StateWord = Annotated[str, Check("a DRBD state word",
                                 lambda s: re.fullmatch(r"[A-Za-z]{1,32}", s) is not None)]
HexId = Annotated[str, Check("16 hex digits",
                             lambda s: re.fullmatch(r"[0-9A-F]{16}", s) is not None)]
GiFlags = Annotated[str, Check("7 flags 0 or 1",
                               lambda s: re.fullmatch(r"[01](:[01]){6}", s) is not None)]
Percent = Annotated[float, Check("0 to 100", lambda p: 0 <= p <= 100)]
# The whole desired-state TOML; the receiving box validates it as `iscsiha validate` does.
Desired = Annotated[str, Check(f"a desired state of at most {DESIRED_BYTES_MAX} bytes",
                               lambda s: len(s.encode(errors="replace")) <= DESIRED_BYTES_MAX
                               and printable(s, "\n\t\r"), secret=True)]

Q = TypeVar("Q")
R = TypeVar("R")


@dataclass(frozen=True)
class Step(Generic[Q, R]):
    """A step's name with its request and reply types, and the first protocol that has it
    (a box serving only older ones does not know the step)."""

    name: str
    request: type[Q]
    reply: type[R]
    since: int = 1


@dataclass(frozen=True)
class Nothing:
    """The request of a step that needs no arguments, the reply of one that returns none."""


# -- apply's checks and volumes ----------------------------------------------------------

@dataclass(frozen=True)
class FactsRequest:
    vgs: tuple[LvmName, ...]
    volumes: tuple[tuple[Name, LvmName], ...]  # (name, volume group)
    drbd: dict[Name, Minor]  # exported volumes: name -> minor


@dataclass(frozen=True)
class DiskState:
    role: StateWord
    connection: StateWord
    disk: StateWord
    peer_disk: StateWord


@dataclass(frozen=True)
class PoolFacts:
    """One of the cluster's thin pools on a box, as lvs reports it."""

    name: LvmName
    volume_group: LvmName
    size: Count  # bytes of data space
    data_percent: Percent | None
    metadata_percent: Percent | None


@dataclass(frozen=True)
class Facts:
    vgs: dict[LvmName, tuple[Count, Bytes]]  # volume group -> (free bytes, extent size)
    lvs: dict[Name, Count | None]  # volume -> its LV's size, None when it has none
    tagged: dict[LvmName, LvmName]  # the cluster's LVs on this box -> their volume group
    drbd: dict[Name, DiskState]
    pools: tuple[PoolFacts, ...] = ()  # the cluster's thin pools on this box
    thin: tuple[tuple[LvmName, LvmName], ...] = ()  # its thin volumes: (name, pool)


@dataclass(frozen=True)
class Volumes:
    volumes: tuple[tuple[Name, LvmName, Bytes], ...]  # (name, volume group, size)
    thin: tuple[tuple[Name, Name], ...] = ()  # (volume, its pool) of the thin ones


@dataclass(frozen=True)
class Pools:
    pools: tuple[PoolFacts, ...]


@dataclass(frozen=True)
class VolumeGroups:
    volumes: tuple[tuple[Name, LvmName], ...]  # (name, volume group)


# -- DRBD ----------------------------------------------------------------------------------

@dataclass(frozen=True)
class Resources:
    resources: tuple[Name, ...]


@dataclass(frozen=True)
class Refs:
    volumes: tuple[VolumeRef, ...]


@dataclass(frozen=True)
class SyncNew:
    volumes: tuple[tuple[VolumeRef, Minor], ...]
    timeout: Seconds = 60.0


@dataclass(frozen=True)
class Role:
    role: Literal["primary", "secondary"]
    volumes: tuple[VolumeRef, ...]


# -- files and secrets, rebuilt on the receiving box ------------------------------------

@dataclass(frozen=True)
class Slots:
    """A target's DRBD resource as allocated: its port and each volume's (number, minor)."""

    port: Port
    volumes: dict[Name, tuple[VolumeNumber, Minor]]
    reservations: Minor | None = None  # the reservations volume's minor


@dataclass(frozen=True)
class DrbdFiles:
    """The resource files of ``resources``, for the targets of ``desired``."""

    desired: Desired
    resources: dict[Name, Slots]


@dataclass(frozen=True)
class DesiredState:
    desired: Desired


@dataclass(frozen=True)
class Paths:
    paths: tuple[Text, ...]


# -- targets ---------------------------------------------------------------------------

@dataclass(frozen=True)
class Iqns:
    iqns: tuple[IscsiName, ...]


@dataclass(frozen=True)
class Sessions:
    sessions: dict[IscsiName, tuple[IscsiName, ...]]  # target -> initiators logged in


# -- the last failover's timeline -----------------------------------------------------

# A phase as iscsiha.timeline names it; wall time in seconds since 1970 on the sending box.
Phase = Annotated[str, Check(f"printable text of 1 to {PHASE_MAX} characters",
                             lambda s: 0 < len(s) <= PHASE_MAX and s.isprintable())]
WallTime = Annotated[float, Check(f"seconds since 1970, 0 to {WALL_MAX:.0f}",
                                  lambda t: 0 <= t <= WALL_MAX)]
JOURNAL_EVENTS_MAX = 2000  # the newest; within the codec's ITEMS_MAX


@dataclass(frozen=True)
class JournalEvent:
    node: NodeName
    phase: Phase
    at: WallTime


@dataclass(frozen=True)
class JournalEvents:
    events: tuple[JournalEvent, ...]


# -- split brain -----------------------------------------------------------------------

@dataclass(frozen=True)
class SplitBrainVolumes:
    volumes: dict[Name, tuple[VolumeRef, Minor]]


@dataclass(frozen=True)
class GenerationIds:
    current: HexId
    bitmap: HexId
    history: tuple[HexId, HexId]
    flags: GiFlags


@dataclass(frozen=True)
class Detail:
    role: StateWord
    peer_role: StateWord
    connection: StateWord
    disk: StateWord
    peer_disk: StateWord
    out_of_sync_kib: Count
    synced_percent: Percent | None
    resync_total_kib: Count | None
    gi: GenerationIds | None
    kernel: tuple[Text, ...]


@dataclass(frozen=True)
class SplitBrainFacts:
    volumes: dict[Name, Detail]


@dataclass(frozen=True)
class SplitBrainSide:
    resource: Name
    minor: Minor
    node: NodeName


@dataclass(frozen=True)
class Commands:
    commands: tuple[Text, ...]  # the commands the step ran, in order


# -- the audit log ---------------------------------------------------------------------

AUDIT_TEXT_MAX = 256 * 1024
# A record's free text (a command line, a diff): printable, newlines allowed, bounded.
AuditText = Annotated[str, Check(f"printable text of at most {AUDIT_TEXT_MAX} characters",
                                 lambda s: len(s) <= AUDIT_TEXT_MAX and printable(s, "\n\t"))]

IsoTime = Annotated[str, Check("an ISO 8601 time",
                               lambda s: re.fullmatch(r"[0-9T:.+-]{10,40}", s) is not None)]


@dataclass(frozen=True)
class AuditCopy:
    """A record of the sender's audit log, for this box to keep a copy (iscsiha.audit)."""

    time: IsoTime
    box: NodeName
    user: Text
    source: Text | None
    via: Literal["cli", "console"]
    command: AuditText
    result: Literal["ok", "refused", "failed"]
    message: AuditText
    diff: AuditText


# -- support bundle --------------------------------------------------------------------

# The box's part: a .tar.gz, base64, within the codec's MESSAGE_BYTES_MAX with room.
ARCHIVE_B64_MAX = 12 * 1024 * 1024
Since = Annotated[str, Check(SINCE_ALLOWED, lambda s: journal_since(s) is not None)]
Archive = Annotated[str, Check(f"base64 of at most {ARCHIVE_B64_MAX} characters",
                               lambda s: len(s) <= ARCHIVE_B64_MAX and re.fullmatch(
                                   r"[A-Za-z0-9+/]*={0,2}", s, re.A) is not None)]


@dataclass(frozen=True)
class SupportRequest:
    since: Since


@dataclass(frozen=True)
class SupportPart:
    node: NodeName
    archive: Archive  # redacted by the box that made it, and again by the one receiving it


# -- versions (iscsiha.protocol.version): these two never change ---------------------

ProtocolNumber = Annotated[int, Check(f"0 to {PROTOCOL_MAX}", lambda n: 0 <= n <= PROTOCOL_MAX)]
Release = Annotated[str, Check("a release number of 1 to 40 characters (0-9 a-z . + ~ -)",
                               lambda s: re.fullmatch(r"[0-9a-z.+~-]{1,40}", s) is not None)]


@dataclass(frozen=True)
class Hello:
    """What the box runs: its release and the peer protocols it serves."""

    release: Release
    oldest: ProtocolNumber
    newest: ProtocolNumber


# -- the pair's rolling upgrade (iscsiha.commands.upgrade_pair), protocol 2 -----------

SlotWord = Literal["a", "b"]
TrialWord = Literal["none", "armed", "on-trial", "failed"]
RecordState = Literal["none", "staged", "upgraded", "rolled-back"]
# The same rules a manifest's fields meet (iscsiha.model.root_image), and a record's note.
Sha256 = Annotated[str, Check("64 lowercase hex digits",
                              lambda s: root_image.HEX64.fullmatch(s) is not None)]
Uuid = Annotated[str, Check("a UUID (8-4-4-4-12 lowercase hex digits)", lambda s: re.fullmatch(
    r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}", s) is not None)]
Word = Annotated[str, Check("1 to 64 characters (A-Z a-z 0-9 . + ~ _ -)",
                            lambda s: root_image.WORD.fullmatch(s) is not None)]
ImageBytes = Annotated[int, Check("1 byte to 64 GiB", lambda n: 1 <= n <= 64 << 30)]
Note = Annotated[str, Check(f"printable text of at most {pair_upgrade.NOTE_MAX} characters",
                            lambda s: len(s) <= pair_upgrade.NOTE_MAX and printable(s))]


@dataclass(frozen=True)
class RootImage:
    """A root image's manifest (iscsiha.model.root_image): its bytes follow the request
    line on the stage-root step's stdin."""

    version: Word
    commit: Word
    root_uuid: Uuid
    size: ImageBytes
    sha256: Sha256


@dataclass(frozen=True)
class StagedRoot:
    slot: SlotWord
    seconds: Seconds


@dataclass(frozen=True)
class UpgradeState:
    """A box's slots and where its part of a pair upgrade stands."""

    release: Release
    booted: SlotWord | None  # None: the box did not boot through the A/B logic
    good: SlotWord
    good_root: Uuid | None  # the good slot's root filesystem (None: unreadable)
    trial: TrialWord
    record: RecordState  # this box's pair-upgrade record; none: no upgrade recorded
    record_to: Word | None  # the version the recorded upgrade goes to
    record_left_standby: bool  # its resume service took the box out of standby
    record_note: Note  # what the box says about its part ("" while rebooting)


HELLO = Step("hello", Nothing, Hello)
FACTS = Step("facts", FactsRequest, Facts)
CREATE_VOLUMES = Step("create-volumes", Volumes, Nothing)
CREATE_POOLS = Step("create-pools", Volumes, Nothing)  # (pool, volume group, size)
POOL_USAGE = Step("pool-usage", Nothing, Pools)
DRBD_METADATA = Step("drbd-metadata", Refs, Refs)  # reply: those given metadata
UP = Step("up", Resources, Nothing)
SYNC_NEW = Step("sync-new", SyncNew, Refs)  # reply: those declared in sync
DOWN = Step("down", Resources, Nothing)
DRBD_ROLE = Step("drbd-role", Role, Nothing)
REMOVE_RESOURCES = Step("remove-resources", Resources, Nothing)
DELETE_VOLUMES = Step("delete-volumes", VolumeGroups, Nothing)
GROW_VOLUMES = Step("grow-volumes", Volumes, Nothing)
DRBD_RESIZE = Step("drbd-resize", Refs, Nothing)
WRITE_DRBD_FILES = Step("write-drbd-files", DrbdFiles, Paths)  # reply: files rewritten
WRITE_DESIRED = Step("write-desired", DesiredState, Paths)
WRITE_SECRETS = Step("write-secrets", DesiredState, Nothing)
ADJUST = Step("adjust", Resources, Nothing)
TARGET_SESSIONS = Step("target-sessions", Iqns, Sessions)
SEEN_INITIATORS = Step("seen-initiators", Nothing, Iqns)
JOURNAL_EVENTS = Step("journal-events", Nothing, JournalEvents)
SPLIT_BRAIN_FACTS = Step("split-brain-facts", SplitBrainVolumes, SplitBrainFacts)
SPLIT_BRAIN_DISCARD = Step("split-brain-discard", SplitBrainSide, Commands)
SPLIT_BRAIN_CONNECT = Step("split-brain-connect", SplitBrainSide, Commands)
AUDIT_COPY = Step("audit-copy", AuditCopy, Nothing)
SUPPORT_PART = Step("support-part", SupportRequest, SupportPart)
UPGRADE_STATE = Step("upgrade-state", Nothing, UpgradeState, since=2)
STAGE_ROOT = Step("stage-root", RootImage, StagedRoot, since=2)  # the image streams after
REBOOT = Step("reboot", Nothing, Nothing, since=2)
