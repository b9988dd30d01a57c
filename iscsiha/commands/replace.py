"""Replacing a dead box: a new box with the same name and addresses takes its place.

On the box that stays, `iscsiha cluster replace NODE` checks that NODE is gone, puts
it in standby (Pacemaker then starts nothing there) and issues a join token, as
`cluster init` does. On the new box, as flashed, `iscsiha cluster join` joins with it;
the offer says it replaces NODE, so instead of an apply the joiner rebuilds: it makes
every volume's LV (and thin pool) here, writes the DRBD files with the cluster's own
ports and minors (read from the CIB), gives each volume fresh DRBD metadata and leaves
standby. DRBD then copies every volume in full from the box that stays (fresh metadata
never counts as in sync: nothing here calls sync-new), and the targets fail back by
their policy once this box is UpToDate. `cluster rebuild` runs the rebuild again after
a failure; it only makes what is missing.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass

from iscsiha.commands import bootstrap_steps as steps
from iscsiha.commands import join_token
from iscsiha.commands.apply import drbd_files, volume_refs, volumes_request
from iscsiha.commands.bootstrap import open_join, token_of
from iscsiha.commands.bootstrap_env import JOIN_TTL, JOIN_UNIT, HostEnv, InitResult, PendingJoin
from iscsiha.commands.cluster_env import ClusterEnv
from iscsiha.errors import IscsihaError, Report
from iscsiha.executors.drbd import ProcDevice
from iscsiha.executors.transaction import Transaction
from iscsiha.model.types import Config, Pool, Volume
from iscsiha.plan.cib import previous_drbd
from iscsiha.plan.plan import make_plan
from iscsiha.protocol import messages as m

Progress = Callable[[str], None]
RESYNC_POLL = 10.0  # seconds between looks at DRBD while it copies
RESYNC_WAIT = 3600.0  # what `cluster join` shows of the resync; it goes on afterwards
RESYNC_WAIT_MAX = 7 * 86400.0


def replace(env: HostEnv, node: str, progress: Progress) -> InitResult:
    """On the box that stays: a token for the box that replaces ``node``."""
    config = steps.installed_config(env)
    here = env.hostname()
    names = [n.name for n in config.cluster.nodes]
    if node not in names or node == here:
        raise IscsihaError.single(
            "not-the-peer", "node", node, f"{next(n for n in names if n != here)} (the other "
            "box of this cluster)", "run `cluster replace` on the box that stays, naming the "
            "one that is gone")
    online = steps.online(env.cib.status())
    if here not in online:
        raise IscsihaError.single("not-online", "node", here, "online in Pacemaker",
                                  "the box that stays must be a running member")
    if node in online:
        raise IscsihaError.single(
            "box-online", "node", node, "a box that is gone (off, fenced or unplugged)",
            "is online in Pacemaker: replacing it would make its volumes anew while it "
            "serves them; power it off first")
    pending = PendingJoin(env.random(join_token.SECRET_BYTES),
                          steps.listen_address(config, here), env.join_port,
                          env.clock() + JOIN_TTL, node, replacing=True)
    if env.systemd.active_state(JOIN_UNIT) in ("active", "activating"):
        progress("stopping the listener of the previous token")
        env.systemd.stop(JOIN_UNIT)
    tx = Transaction(env.root)
    try:
        progress(f"{node}: standby on, so that Pacemaker starts nothing there before its "
                 "volumes are made again")
        env.cib.standby(node, True)
        tx.on_undo(f"standby off for {node}", lambda: env.cib.standby(node, False))
        open_join(env, tx, pending)
    except IscsihaError as exc:
        raise steps.undone(exc, tx, "this box") from exc
    tx.commit()
    return InitResult(token_of(pending), config.cluster.name, here, node, pending.expires,
                      config.cluster.tiebreaker)


@dataclass(frozen=True)
class Rebuilt:
    created: tuple[str, ...]  # volumes (and pools) made here
    metadata: tuple[str, ...]  # RES/NUMBER given fresh DRBD metadata
    minors: tuple[int, ...]  # every volume's DRBD minor, what the resync is watched by


def rebuild(env: ClusterEnv, config: Config, text: str, progress: Progress) -> Rebuilt:
    """On the new box, once it is a member: its missing volumes made, DRBD prepared for a
    full resync, standby off."""
    boxes = env.both_boxes()
    here = boxes.here
    live = env.pacemaker.query()
    plan = make_plan(config, previous_drbd(live), env.cluster_key())
    lvs = [(v.name, v.volume_group) for v in config.volumes]
    lvs += [(p.name, p.volume_group) for p in config.pools]
    progress(f"reading {here}'s volume groups")
    facts = boxes.call(here, m.FACTS, m.FactsRequest(
        vgs=tuple(sorted({vg for _, vg in lvs})), volumes=tuple(lvs), drbd={}))
    pools = tuple(p for p in config.pools if facts.lvs.get(p.name) is None)
    volumes = tuple(v for v in config.volumes if facts.lvs.get(v.name) is None)
    _check_space(facts, pools, volumes, here)
    if pools:
        progress(f"creating thin pool(s): {', '.join(p.name for p in pools)}")
        boxes.call(here, m.CREATE_POOLS, m.Volumes(tuple(
            (p.name, p.volume_group, p.size) for p in pools)))
    if volumes:
        progress(f"creating {len(volumes)} volume(s): {', '.join(v.name for v in volumes)}")
        boxes.call(here, m.CREATE_VOLUMES, volumes_request(volumes))
    boxes.call(here, m.WRITE_SECRETS, m.DesiredState(text))
    targets = sorted(plan.drbd)
    progress("writing the DRBD resource files (the cluster's ports and minors)")
    boxes.call(here, m.WRITE_DRBD_FILES, drbd_files(text, plan, targets))
    slots = volume_refs(plan.drbd, tuple(targets))
    made = boxes.call(here, m.DRBD_METADATA, m.Refs(tuple(ref for ref, _ in slots)))
    if made.volumes:
        progress(f"fresh DRBD metadata on {len(made.volumes)} volume(s): DRBD copies them "
                 "in full from the other box")
    boxes.call(here, m.WRITE_DESIRED, m.DesiredState(text))
    # Pacemaker probed this box's resources as it joined, before their CHAP secrets
    # were here: each target's probe failed ("Unable to load CIB secrets") and would
    # keep the target off this box for good. Probed again now, they find nothing.
    progress(f"{here}: clearing the probes that ran before its volumes and secrets existed")
    env.pacemaker.cleanup_node(here)
    progress(f"{here}: standby off; DRBD starts here and resyncs")
    env.pacemaker.standby(here, False)
    return Rebuilt(tuple(p.name for p in pools) + tuple(v.name for v in volumes),
                   made.volumes, tuple(sorted(minor for _, minor in slots)))


def _check_space(facts: m.Facts, pools: tuple[Pool, ...], volumes: tuple[Volume, ...],
                 here: str) -> None:
    """Room in each volume group for the pools and thick volumes to make (in whole
    extents, as LVM rounds); thin volumes take their pool's space."""
    need: dict[str, int] = {}
    sized = [(p.volume_group, p.size) for p in pools]
    sized += [(v.volume_group, v.size) for v in volumes if v.pool is None]
    reports = []
    for vg, size in sized:
        if vg not in facts.vgs:
            reports.append(Report("no-volume-group", "volume_group", f"{here}:{vg}",
                                  "a volume group this box has", "is missing"))
            continue
        extent = facts.vgs[vg][1]
        need[vg] = need.get(vg, 0) + -(-size // extent) * extent
    reports += [Report("no-space", "volume_group", f"{here}:{vg}",
                       f"at most {facts.vgs[vg][0]} bytes", f"needs {size} bytes")
                for vg, size in sorted(need.items()) if size > facts.vgs[vg][0]]
    if reports:
        raise IscsihaError(reports)


@dataclass(frozen=True)
class Resync:
    minors: int  # the cluster's DRBD minors on this box
    done: int  # Connected and UpToDate on both sides
    percent: float  # of what is being copied, by volume count weighted by the kernel's %


def resync_state(minors: Mapping[int, ProcDevice], wanted: tuple[int, ...]) -> Resync:
    """How far this box's resync is, from /proc/drbd."""
    done, percents = 0, []
    for minor in wanted:
        dev = minors.get(minor)
        if dev is not None and dev.connection == "Connected" and (
                dev.disk, dev.peer_disk) == ("UpToDate", "UpToDate"):
            done += 1
            percents.append(100.0)
        else:
            percents.append((dev.synced_percent or 0.0) if dev is not None else 0.0)
    total = len(wanted)
    return Resync(total, done, round(sum(percents) / total, 1) if total else 100.0)


def resync_line(state: Resync) -> str:
    line = f"resync: {state.done} of {state.minors} volumes in sync, {state.percent:.1f}%"
    if state.done < state.minors:
        line += " (it goes on by itself; `iscsiha status` shows it)"
    return line


def wait_resynced(env: ClusterEnv, wanted: tuple[int, ...], timeout: float,
                  progress: Progress) -> Resync:
    """Progress lines until the ``wanted`` minors are UpToDate on both sides here, or
    ``timeout``."""
    deadline = env.clock.monotonic() + timeout
    said = None
    while True:
        state = resync_state(env.drbd.proc(), wanted)
        line = resync_line(state)
        if line != said:
            progress(line)
            said = line
        if state.done == state.minors or env.clock.monotonic() >= deadline:
            return state
        env.clock.sleep(RESYNC_POLL)
