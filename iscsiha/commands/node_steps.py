"""The steps `iscsiha apply` and `iscsiha split-brain` run on each box (`iscsiha node
STEP`, a typed JSON request in and reply out: iscsiha.protocol.messages).

The request comes from the other box, so it is decoded and checked field by field
before anything runs; files and secrets are rebuilt here from a desired state this
box validates itself, with paths and modes chosen here. Each step is idempotent where
it can be, so a repeated or rolled-back apply converges.
"""

from __future__ import annotations

import grp
import hashlib
import os
import socket
import stat
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, BinaryIO

from iscsiha import __version__, audit
from iscsiha.alerts import config as alert_settings
from iscsiha.commands import support_bundle
from iscsiha.errors import IscsihaError, Report
from iscsiha.executors import files, journal
from iscsiha.executors.audit_log import AUDIT_DIR, AuditLog
from iscsiha.executors.drbd import DOWN, UNCONFIGURED, Drbd, DrbdDetail
from iscsiha.executors.lio import Lio, refused_initiators
from iscsiha.executors.lvm import RESERVATIONS_TAG, Lvm, LvRow
from iscsiha.executors.runner import Runner
from iscsiha.model.identity import (
    RESERVATIONS_SIZE,
    RESERVATIONS_VOLUME,
    DrbdResource,
    DrbdSlot,
    reservations_lv,
)
from iscsiha.model.load import load_text
from iscsiha.model.names import iscsi_name_problem
from iscsiha.model.types import Config
from iscsiha.plan.cib import secret_parameters
from iscsiha.plan.drbd import AUTHKEY_PATH, FOLDER, reservations_vg, resource_file
from iscsiha.protocol import codec
from iscsiha.protocol import messages as m
from iscsiha.protocol.version import THIS_BUILD, Speaks

if TYPE_CHECKING:
    from iscsiha.commands.upgrade_env import UpgradeEnv

SECRETS_DIR = "/var/lib/pacemaker/lrm/secrets"  # where Pacemaker resolves lrm:// values
DESIRED_PATH = "/etc/iscsiha/desired.toml"
DESIRED_MODE = RESOURCE_MODE = SECRET_MODE = 0o600  # they all hold secrets


def _real_upgrade_env() -> UpgradeEnv:
    """This box's boot disk, imported when an upgrade step runs: every other step's
    start stays free of the upgrade modules."""
    from iscsiha.commands import upgrade_env
    return upgrade_env.real_env()


@dataclass(frozen=True)
class Box:
    runner: Runner
    read: Callable[[str], str] = files.read_text  # kernel files (/proc/drbd)
    read_bytes: Callable[[str], bytes | None] = files.read  # this box's authkey
    secrets_dir: str = SECRETS_DIR
    desired_path: str = DESIRED_PATH
    drbd_dir: str = FOLDER
    audit_dir: str = AUDIT_DIR
    speaks: Speaks = THIS_BUILD  # tests give a box another build's protocols
    hostname: Callable[[], str] = socket.gethostname  # the node name (Boxes checks they agree)
    wall_clock: Callable[[], float] = time.time
    alerts_group: str | None = alert_settings.GROUP  # None: the writer's own (tests)
    stream: BinaryIO | None = None  # stdin after the request line (stage-root)
    upgrade_env: Callable[[], UpgradeEnv] = _real_upgrade_env

    def resource_path(self, target: str) -> str:
        return os.path.join(self.drbd_dir, f"{target}.res")

    @property
    def alerts_path(self) -> str:
        """Beside the desired state (alert_settings.PATH on a box)."""
        return os.path.join(os.path.dirname(self.desired_path),
                            os.path.basename(alert_settings.PATH))

    @property
    def lvm(self) -> Lvm:
        return Lvm(self.runner)

    @property
    def drbd(self) -> Drbd:
        return Drbd(self.runner, self.read)


def facts(box: Box, req: m.FactsRequest) -> m.Facts:
    """What apply checks before changing anything: the cluster's LVs (tagged), LV
    sizes, VG space, and exported volumes' DRBD states (volume -> minor)."""
    proc = box.drbd.proc()
    rows = box.lvm.cluster_lvs()
    return m.Facts(
        vgs={vg: box.lvm.free_and_extent(vg) for vg in req.vgs},
        lvs={name: box.lvm.size(vg, name) for name, vg in req.volumes},
        tagged={row.name: row.vg for row in rows if not row.is_pool},
        drbd={name: m.DiskState(d.role, d.connection, d.disk, d.peer_disk)
              for name, minor in req.drbd.items()
              for d in [proc.get(minor, UNCONFIGURED)]},
        pools=_pool_facts(rows),
        thin=tuple((row.name, row.pool) for row in rows if row.pool))


def _pool_facts(rows: list[LvRow]) -> tuple[m.PoolFacts, ...]:
    return tuple(m.PoolFacts(r.name, r.vg, r.size, r.data_percent, r.metadata_percent)
                 for r in rows if r.is_pool)


def create_volumes(box: Box, req: m.Volumes) -> m.Nothing:
    """The LVs alone: DRBD metadata comes when a target first exports one."""
    pool_of = dict(req.thin)
    for name, vg, size in req.volumes:
        if name in pool_of:
            box.lvm.create_thin(vg, pool_of[name], name, size)
        else:
            box.lvm.create(vg, name, size)
    return m.Nothing()


def create_pools(box: Box, req: m.Volumes) -> m.Nothing:
    """Thin pools (name, volume group, size) this box lacks; one it has is left as is."""
    have = {(row.name, row.vg) for row in box.lvm.pools()}
    for name, vg, size in req.volumes:
        if (name, vg) not in have:
            box.lvm.create_pool(vg, name, size)
    return m.Nothing()


def pool_usage(box: Box, req: m.Nothing) -> m.Pools:
    """The cluster's thin pools on this box and how full they are."""
    return m.Pools(_pool_facts(box.lvm.pools()))


def drbd_metadata(box: Box, req: m.Refs) -> m.Refs:
    """DRBD metadata on the RES/NUMBER volumes whose disks have none yet; those."""
    made = []
    for volume in req.volumes:
        if not box.drbd.has_metadata(volume):
            box.drbd.create_md(volume)
            made.append(volume)
    return m.Refs(tuple(made))


def up(box: Box, req: m.Resources) -> m.Nothing:
    """Bring resources up (to prepare them before Pacemaker takes them over)."""
    for res in req.resources:
        if box.drbd.state(res) == DOWN:
            box.drbd.up(res)
    return m.Nothing()


def sync_new(box: Box, req: m.SyncNew) -> m.Refs:
    """Once connected, declare never-written volumes in sync (no initial full sync).

    Only a volume Inconsistent on both sides is touched, and DRBD itself allows the
    clear-bitmap path only on metadata that was never used, so a volume with history
    is never declared in sync.
    """
    deadline = time.monotonic() + req.timeout
    skipped = []
    for volume, minor in req.volumes:
        while (now := box.drbd.proc().get(minor, UNCONFIGURED)).connection != "Connected":
            if time.monotonic() > deadline:
                raise IscsihaError.single(
                    "drbd-not-connected", "volume", volume, "connected to the peer",
                    f"still {now.connection}: check the replication link")
            time.sleep(0.5)
        if now.disk == now.peer_disk == "Inconsistent":
            box.drbd.skip_initial_sync(volume)
            skipped.append(volume)
    return m.Refs(tuple(skipped))


def down(box: Box, req: m.Resources) -> m.Nothing:
    """Hand the resources to Pacemaker, which brings them up itself."""
    for res in req.resources:
        if box.drbd.state(res) != DOWN:
            box.drbd.down(res)
    return m.Nothing()


def drbd_role(box: Box, req: m.Role) -> m.Nothing:
    """Promote or demote single RES/NUMBER volumes of a resource whose role Pacemaker
    holds (volumes joining or leaving a Primary resource)."""
    for volume in req.volumes:
        if req.role == "primary":
            box.drbd.primary(volume)
        else:
            box.drbd.secondary(volume)
    return m.Nothing()


def remove_resources(box: Box, req: m.Resources) -> m.Nothing:
    """Deleted targets' resources: down (if Pacemaker left them up), their files and
    their reservations LVs gone."""
    made = box.lvm.tagged(RESERVATIONS_TAG)
    for res in req.resources:
        path = box.resource_path(res)
        if os.path.lexists(path):
            if box.drbd.state(res) != DOWN:
                box.drbd.down(res)
            files.remove(path)
        if (vg := made.get(reservations_lv(res))) is not None:
            box.lvm.remove(vg, reservations_lv(res))
    return m.Nothing()


def delete_volumes(box: Box, req: m.VolumeGroups) -> m.Nothing:
    """The cluster's LVs (in no DRBD resource any more); tolerates any already gone."""
    tagged = box.lvm.tagged()
    for name, vg in req.volumes:
        if tagged.get(name) == vg:
            box.lvm.remove(vg, name)
    return m.Nothing()


def grow_volumes(box: Box, req: m.Volumes) -> m.Nothing:
    for name, vg, size in req.volumes:
        current = box.lvm.size(vg, name)
        if current is not None and current < size:
            box.lvm.extend(vg, name, size)
    return m.Nothing()


def drbd_resize(box: Box, req: m.Refs) -> m.Nothing:
    """DRBD takes the grown disks (RES/NUMBER volumes), moving its metadata to the end."""
    for volume in req.volumes:
        box.drbd.resize(volume)
    return m.Nothing()


def adjust(box: Box, req: m.Resources) -> m.Nothing:
    """Running resources take their rewritten files (options, peer secret, volumes
    added or removed); stopped ones read them at start."""
    for res in req.resources:
        if box.drbd.state(res) != DOWN:
            box.drbd.adjust(res)
    return m.Nothing()


# -- files and secrets: rebuilt here, never taken as sent -------------------------------

def _config(desired: str) -> Config:
    """The desired state the other box sent, validated here as `iscsiha validate` would."""
    return load_text(desired, "desired state from the peer")


def write_drbd_files(box: Box, req: m.DrbdFiles) -> m.Paths:
    """Each target's resource file, rendered here from the validated desired state and
    the allocation (checked: the target's own volumes, no minor or port twice) with
    this box's own copy of the cluster key; the files that changed."""
    config = _config(req.desired)
    key = cluster_key(box.read_bytes)
    resources = _checked_allocation(config, req.resources)
    targets = {t.name: t for t in config.targets}
    written = []
    wanted = any(res.reservations is not None for res in resources.values())
    made = box.lvm.tagged(RESERVATIONS_TAG) if wanted else {}
    for name, res in resources.items():
        lv = reservations_lv(name)
        if res.reservations is not None and lv not in made:
            # Before the file that names it: drbdadm refuses a resource whose disk is missing.
            box.lvm.create(reservations_vg(config, targets[name]), lv, RESERVATIONS_SIZE,
                           tag=RESERVATIONS_TAG)
        text = resource_file(config, targets[name], res, key)
        path = box.resource_path(name)
        if files.write_if_changed(path, text.encode(), RESOURCE_MODE):
            written.append(path)
    return m.Paths(tuple(written))


def cluster_key(read: Callable[[str], bytes | None] = files.read) -> bytes:
    """This box's copy of the cluster's authkey (DRBD's peer secrets derive from it)."""
    key = read(AUTHKEY_PATH)
    if not key:
        raise IscsihaError.single("missing-authkey", "file", AUTHKEY_PATH,
                                  "the cluster's corosync authkey, present on both boxes",
                                  "is missing or empty: is this box a cluster member?")
    return key


def _checked_allocation(config: Config, sent: dict[str, m.Slots]) -> dict[str, DrbdResource]:
    reports = []
    targets = {t.name: t for t in config.targets}
    minors: dict[int, str] = {}
    ports: dict[int, str] = {}
    for name, slots in sent.items():
        target = targets.get(name)
        if target is None:
            reports.append(Report("unknown-target", "resources", name,
                                  ", ".join(targets) or "no target", "is not in the desired state"))
            continue
        luns = {lun.volume for lun in target.luns}
        if set(slots.volumes) != luns:
            reports.append(Report("drbd-volumes-mismatch", f"resources.{name}",
                                  ", ".join(sorted(slots.volumes)), ", ".join(sorted(luns)),
                                  "are not the target's LUN volumes"))
        numbers = [n for n, _ in slots.volumes.values()]
        if len(set(numbers)) != len(numbers):
            reports.append(Report("drbd-volume-number-twice", f"resources.{name}",
                                  sorted(numbers), "each volume number once"))
        claims = [(volume, minor) for volume, (_, minor) in slots.volumes.items()]
        if slots.reservations is not None:
            claims.append((reservations_lv(name), slots.reservations))
        if RESERVATIONS_VOLUME in numbers:
            reports.append(Report("drbd-volume-number-reserved", f"resources.{name}",
                                  RESERVATIONS_VOLUME, "a LUN volume number below it"))
        for volume, minor in claims:
            if minors.setdefault(minor, volume) != volume:
                reports.append(Report("drbd-minor-twice", f"resources.{name}.{volume}", minor,
                                      f"a minor no other volume has ({minors[minor]} has it)"))
        if ports.setdefault(slots.port, name) != name:
            reports.append(Report("drbd-port-twice", f"resources.{name}", slots.port,
                                  f"a port no other target has ({ports[slots.port]} has it)"))
    if reports:
        raise IscsihaError(reports)
    return {name: DrbdResource(s.port, {v: DrbdSlot(n, minor)
                                        for v, (n, minor) in s.volumes.items()},
                               s.reservations)
            for name, s in sent.items()}


def write_desired(box: Box, req: m.DesiredState) -> m.Paths:
    """The desired state apply made, kept on both boxes (validated first)."""
    _config(req.desired)
    written = files.write_if_changed(box.desired_path, req.desired.encode(), DESIRED_MODE)
    return m.Paths((box.desired_path,) if written else ())


def write_secrets(box: Box, req: m.DesiredState) -> m.Nothing:
    """Pacemaker's lrm:// store for the secrets this box's own plan of the desired state
    holds: the value and its MD5 (how cibsecret lays it out); and the alert settings,
    which Pacemaker's alert agent reads as hacluster (iscsiha.alerts.config)."""
    config = _config(req.desired)
    _write_alert_settings(box, config)
    for (rsc, param), value in secret_parameters(config).items():
        folder = _secret_folder(box.secrets_dir, rsc)
        files.write_atomic(f"{folder}/{param}", value.encode(), SECRET_MODE)
        digest = hashlib.md5(value.encode(), usedforsecurity=False).hexdigest()
        files.write_atomic(f"{folder}/{param}.sign", digest.encode(), SECRET_MODE)
    return m.Nothing()


def _write_alert_settings(box: Box, config: Config) -> None:
    gid = -1
    if box.alerts_group is not None:
        try:
            gid = grp.getgrnam(box.alerts_group).gr_gid
        except KeyError:
            raise IscsihaError.single("no-group", "alert settings", box.alerts_group,
                                      "Pacemaker's group on this box (the pacemaker package "
                                      "makes it)", "the alert agent could not read them"
                                      ) from None
    # Written 0600 then given to the group: never readable by more than it should be.
    files.write_atomic(box.alerts_path, alert_settings.file_text(config).encode(), 0o600)
    if gid != -1:
        os.chown(box.alerts_path, -1, gid)
    os.chmod(box.alerts_path, alert_settings.MODE)


def _secret_folder(top: str, rsc: str) -> str:
    """``top``/``rsc``, a real folder (not a link planted to point elsewhere)."""
    folder = os.path.join(top, rsc)
    os.makedirs(folder, mode=0o700, exist_ok=True)
    st = os.lstat(folder)
    if not stat.S_ISDIR(st.st_mode) or st.st_uid != os.geteuid():
        raise IscsihaError.single("secret-folder-unsafe", "folder", folder,
                                  "a folder of this box's own, not a link",
                                  "nothing was written there")
    return folder


# -- targets and split brain -----------------------------------------------------------

def target_sessions(box: Box, req: m.Iqns) -> m.Sessions:
    """Target IQN -> initiators logged in to it on this box."""
    lio = Lio()
    return m.Sessions({iqn: tuple(i for i in lio.sessions(iqn) if iscsi_name_problem(i) is None)
                       for iqn in req.iqns})


def seen_initiators(box: Box, req: m.Nothing) -> m.Iqns:
    """Initiators that tried to log in here and were refused (not in an ACL); a name
    no ACL could hold is not passed on."""
    return m.Iqns(tuple(i for i in refused_initiators(box.drbd.kernel_log())
                        if i.isprintable() and iscsi_name_problem(i) is None))


def journal_events(box: Box, req: m.Nothing) -> m.JournalEvents:
    """The failover phases this box's journal holds (the newest), on its own clock."""
    node = box.hostname()
    found = [m.JournalEvent(node, e.phase, e.at)
             for e in journal.events(box.runner, node, box.wall_clock()) if e.at >= 0]
    return m.JournalEvents(tuple(found[-m.JOURNAL_EVENTS_MAX:]))


def split_brain_facts(box: Box, req: m.SplitBrainVolumes) -> m.SplitBrainFacts:
    """Each volume's DRBD state, generation identifiers and kernel lines."""
    proc = box.drbd.proc()
    kernel = box.drbd.kernel_log()
    return m.SplitBrainFacts({name: detail_message(box.drbd.detail(ref, minor, proc, kernel))
                              for name, (ref, minor) in req.volumes.items()})


def detail_message(d: DrbdDetail) -> m.Detail:
    gi = (m.GenerationIds(d.gi.current, d.gi.bitmap, d.gi.history, d.gi.flags)
          if d.gi else None)
    return m.Detail(d.role, d.peer_role, d.connection, d.disk, d.peer_disk, d.out_of_sync_kib,
                    d.synced_percent, d.resync_total_kib, gi,
                    tuple(line[:codec.TEXT_MAX] for line in d.kernel if line.isprintable()))


def split_brain_discard(box: Box, req: m.SplitBrainSide) -> m.Commands:
    """This box gives up its changes: disconnect, Secondary, connect discarding its data.

    Refuses a Primary (checked again here, at the moment it counts): demoting it
    would take the volume from under its target. The commands run, in order.
    """
    name, node = req.resource, req.node
    now = box.drbd.proc().get(req.minor, UNCONFIGURED)
    if now.role != "Secondary":
        raise IscsihaError.single(
            "discard-side-not-secondary", "node", node, "a box where the volume is Secondary",
            f"target {name}'s DRBD resource is {now.role} on {node}: nothing was changed")
    ran = []
    # 8.4 refuses to disconnect a StandAlone resource ("unknown connection"): it has
    # no connection left to drop.
    if now.connection != "StandAlone":
        box.drbd.disconnect(name)
        ran.append(f"drbdadm disconnect {name}")
    box.drbd.secondary(name)
    box.drbd.connect(name, discard_my_data=True)
    return m.Commands((*ran, f"drbdadm secondary {name}",
                       f"drbdadm connect --discard-my-data {name}"))


def split_brain_connect(box: Box, req: m.SplitBrainSide) -> m.Commands:
    """The kept box connects again if DRBD gave up on its peer (StandAlone)."""
    if box.drbd.proc().get(req.minor, UNCONFIGURED).connection != "StandAlone":
        return m.Commands(())  # already waiting for the peer (WFConnection) or talking to it
    box.drbd.connect(req.resource)
    return m.Commands((f"drbdadm connect {req.resource}",))


def audit_copy(box: Box, req: m.AuditCopy) -> m.Nothing:
    """The peer's audit record, kept here too, marked as its copy."""
    try:
        AuditLog(box.audit_dir).append(audit.line(audit.Record(
            req.time, req.box, req.user, req.source, req.via, req.command, req.result,
            req.message, req.diff, peer="copy", copy_from=req.box)))
    except OSError as exc:
        raise IscsihaError.single("audit-unwritable", "audit log", box.audit_dir,
                                  "a folder root may write", exc.strerror or str(exc)) from exc
    return m.Nothing()


# The upgrade steps are imported when run: their modules reach the status views, which
# reach the apply command, which imports this module.

def upgrade_state(box: Box, req: m.Nothing) -> m.UpgradeState:
    from iscsiha.commands import upgrade_steps
    return upgrade_steps.state(box.upgrade_env())


def stage_root(box: Box, req: m.RootImage) -> m.StagedRoot:
    from iscsiha.commands import upgrade_steps
    if box.stream is None:
        raise IscsihaError.single("no-image-stream", "step", m.STAGE_ROOT.name,
                                  "the image on stdin after the request line")
    return upgrade_steps.stage_root(box.upgrade_env(), req, box.stream)


def reboot(box: Box, req: m.Nothing) -> m.Nothing:
    from iscsiha.commands import upgrade_steps
    return upgrade_steps.reboot(box.runner)


def hello(box: Box, req: m.Nothing) -> m.Hello:
    return m.Hello(release=__version__, oldest=box.speaks.oldest, newest=box.speaks.newest)


Handler = tuple[m.Step[Any, Any], Callable[[Box, Any], Any]]
_HANDLERS: list[Handler] = [
    (m.HELLO, hello),
    (m.FACTS, facts),
    (m.CREATE_VOLUMES, create_volumes),
    (m.CREATE_POOLS, create_pools),
    (m.POOL_USAGE, pool_usage),
    (m.DRBD_METADATA, drbd_metadata),
    (m.UP, up),
    (m.SYNC_NEW, sync_new),
    (m.DOWN, down),
    (m.DRBD_ROLE, drbd_role),
    (m.REMOVE_RESOURCES, remove_resources),
    (m.DELETE_VOLUMES, delete_volumes),
    (m.GROW_VOLUMES, grow_volumes),
    (m.DRBD_RESIZE, drbd_resize),
    (m.WRITE_DRBD_FILES, write_drbd_files),
    (m.WRITE_DESIRED, write_desired),
    (m.WRITE_SECRETS, write_secrets),
    (m.ADJUST, adjust),
    (m.TARGET_SESSIONS, target_sessions),
    (m.SEEN_INITIATORS, seen_initiators),
    (m.JOURNAL_EVENTS, journal_events),
    (m.SPLIT_BRAIN_FACTS, split_brain_facts),
    (m.SPLIT_BRAIN_DISCARD, split_brain_discard),
    (m.SPLIT_BRAIN_CONNECT, split_brain_connect),
    (m.AUDIT_COPY, audit_copy),
    (m.SUPPORT_PART, support_bundle.part),
    (m.UPGRADE_STATE, upgrade_state),
    (m.STAGE_ROOT, stage_root),
    (m.REBOOT, reboot),
]
STREAMED = frozenset({m.STAGE_ROOT.name})  # their request is one line; data follows
STEPS: dict[str, Handler] = {step.name: (step, handler) for step, handler in _HANDLERS}


def serve(box: Box, step: str, raw: bytes | str, protocol: int | None = None
          ) -> tuple[bool, str]:
    """One request, as `iscsiha node STEP --protocol V` gets it on stdin: (succeeded,
    JSON to print). Without a protocol the request is in this build's own.

    Anything wrong with the request is refused before the step runs; the step's own
    refusals go back as reports (secrets shown by length only).
    """
    try:
        if step not in STEPS:
            raise IscsihaError.single("unknown-step", "step", step, ", ".join(STEPS))
        spec, handler = STEPS[step]
        if step != m.HELLO.name:  # hello is how a peer learns what to write
            written = box.speaks.newest if protocol is None else protocol
            box.speaks.check(written, f"{step} --protocol")
            box.speaks.step(step, spec.since, written, "step")
        request = codec.decode(spec.request, codec.loads(raw), step)
        return True, codec.dumps(handler(box, request))
    except IscsihaError as exc:
        return False, codec.reports_json(exc.reports)
