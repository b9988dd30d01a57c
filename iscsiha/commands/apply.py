"""Apply a desired state to the running cluster.

Order, so that a refused or failed apply leaves the cluster as it was:
1. check everything first (both boxes reachable, volume group space, no shrink,
   deletions confirmed and not exported, growth only while DRBD is connected);
2. create new volumes' LVs on both boxes; if anything later fails before the CIB
   changes, they are removed again;
3. Pacemaker's lrm:// secrets, and the DRBD resource files of targets whose volumes
   stay the same; new targets' resources are prepared (metadata, initial sync
   skipped) and left down for Pacemaker;
4. one versioned CIB patch (Pacemaker refuses it whole if the configuration moved
   on) with the running targets' LUNs that stay; a deleted target's DRBD clone
   stays in it, stopped;
5. volumes joining or leaving a running target's DRBD resource, with the clone in
   maintenance (DRBD's agent would see a half-added volume as a reason to demote);
6. the final CIB; once deleted targets' clones have stopped they are dropped
   (dropping a running promotable clone in one step orphans it: Pacemaker then
   cannot demote it); volumes grown; deleted volumes' LVs removed.
"""

from __future__ import annotations

import xml.etree.ElementTree as ET
from collections.abc import Callable, Mapping
from dataclasses import dataclass

from iscsiha.commands import maintenance
from iscsiha.commands.apply_checks import (
    Delta,
    before_joining,
    check_deletes,
    check_facts,
    check_reshapes,
    delta,
    exported_volumes,
)
from iscsiha.commands.apply_losses import Loss, losses, secret_resource
from iscsiha.commands.apply_pools import NO_POOL_CHANGES, PoolChanges, check_pools
from iscsiha.commands.cluster_env import Boxes, Cib, ClusterEnv, Files
from iscsiha.commands.node_steps import SECRETS_DIR
from iscsiha.commands.targets import clone_roles
from iscsiha.errors import PARTLY_APPLIED, IscsihaError, Report
from iscsiha.model.identity import RESERVATIONS_SIZE, DrbdResource
from iscsiha.model.types import Config, Pool, Volume
from iscsiha.plan.cib import drbd_clone_id, previous_drbd, secret_parameters, target_group_id
from iscsiha.plan.cib_merge import merge
from iscsiha.plan.drbd import reservations_vg, resource_path
from iscsiha.plan.plan import Plan, make_plan
from iscsiha.protocol import messages as m

__all__ = ["Approve", "Changes", "Checked", "apply", "check", "exported_volumes"]

Progress = Callable[[str], None]
# Asked, after every check and before any change, when initiators would lose something;
# it raises IscsihaError to refuse.
Approve = Callable[[tuple[Loss, ...]], None]
SETTLE_SECONDS = 120.0  # a transition of a few targets' stops and starts


@dataclass(frozen=True)
class Changes:
    create: tuple[Volume, ...]
    grow: tuple[Volume, ...]
    delete: tuple[str, ...]
    cib_changed: bool = False


@dataclass(frozen=True)
class Checked:
    """What apply found and would do, every check passed; nothing changed yet."""

    live: str  # the CIB as read
    previous: Mapping[str, DrbdResource]
    plan: Plan
    facts: Mapping[str, m.Facts]
    change: Delta
    grow: tuple[Volume, ...]
    secrets_changed: frozenset[str] = frozenset()  # resources whose CHAP secret changes
    pools: PoolChanges = NO_POOL_CHANGES  # thin pools to create or grow

    @property
    def losses(self) -> tuple[Loss, ...]:
        """What the live targets' initiators would lose."""
        return losses(self.live, self.plan.cib, self.secrets_changed)


def check(env: ClusterEnv, config: Config, confirmed_deletes: frozenset[str],
          progress: Progress) -> Checked:
    """Step 1: read the cluster and both boxes, refuse what cannot be done."""
    pacemaker, boxes = env.pacemaker, env.both_boxes()
    live = pacemaker.query()
    previous = previous_drbd(live)
    plan = make_plan(config, previous, env.cluster_key())
    progress(f"checking both boxes ({', '.join(boxes.names)})")
    running = {v: slot.minor for t, res in previous.items() if t in plan.drbd
               for v, slot in res.volumes.items() if v in plan.drbd[t].volumes}
    lvs = [(v.name, v.volume_group) for v in config.volumes]
    lvs += [(p.name, p.volume_group) for p in config.pools]  # a name taken outside the cluster
    facts = boxes.on_both(m.FACTS, m.FactsRequest(
        vgs=tuple(sorted({vg for _, vg in lvs})), volumes=tuple(lvs), drbd=running))
    known = {name for f in facts.values() for name in f.tagged}
    change = delta(config, previous, known)
    check_deletes(change.delete, confirmed_deletes, exported_volumes(live))
    check_reshapes(config, previous, change)
    pools = check_pools(config, change.create, facts)
    grow = check_facts(config, change.create, set(running), facts,
                       _with_reservations(pools.need, config, change.new_targets, facts))
    return Checked(live, previous, plan, facts, change, tuple(grow),
                   _secrets_changed(env.files, config, previous), pools)


def _with_reservations(need: Mapping[str, Mapping[str, int]], config: Config,
                       new_targets: tuple[str, ...], facts: Mapping[str, m.Facts]
                       ) -> dict[str, dict[str, int]]:
    """``need`` (node -> volume group -> bytes) plus the new targets' reservations LVs."""
    targets = {t.name: t for t in config.targets}
    out = {node: dict(need.get(node, {})) for node in facts}
    for name in new_targets:
        vg = reservations_vg(config, targets[name])
        for vgs in out.values():
            vgs[vg] = vgs.get(vg, 0) + RESERVATIONS_SIZE
    return out


def _secrets_changed(store: Files, config: Config, running: Mapping[str, object]
                     ) -> frozenset[str]:
    """The running targets' resources whose CHAP secret differs from this box's store
    (what the last apply wrote on both boxes); a secret not stored yet is no change."""
    ours = {secret_resource(t) for t in running}
    changed = set()
    for (rsc, param), value in secret_parameters(config).items():
        if rsc in ours:
            stored = store.read(f"{SECRETS_DIR}/{rsc}/{param}")
            if stored is not None and stored != value.encode():
                changed.add(rsc)
    return frozenset(changed)


def apply(env: ClusterEnv, config: Config, text: str, confirmed_deletes: frozenset[str],
          progress: Progress, approve: Approve | None = None) -> Changes:
    """``approve``: asked when initiators would lose something (None: internal callers
    such as `cluster join`, where nothing runs yet, go on without asking)."""
    pacemaker, boxes = env.pacemaker, env.both_boxes()
    checked = check(env, config, confirmed_deletes, progress)
    if approve is not None and checked.losses:
        approve(checked.losses)
    live, previous, plan, facts = checked.live, checked.previous, checked.plan, checked.facts
    change, grow = checked.change, checked.grow

    try:
        _pools(boxes, checked.pools, progress)
        if change.create:
            progress(f"creating {len(change.create)} volume(s) on both boxes: "
                     f"{', '.join(v.name for v in change.create)}")
            boxes.on_both(m.CREATE_VOLUMES, volumes_request(change.create))
        boxes.on_both(m.WRITE_SECRETS, m.DesiredState(text))
        steady = [t for t in plan.drbd if t not in change.reshaped]
        progress("writing DRBD resource files on both boxes")
        written = boxes.on_both(m.WRITE_DRBD_FILES, drbd_files(text, plan, steady))
        rewritten = {path for w in written.values() for path in w.paths}
        adjusted = sorted(t for t in steady if t not in change.new_targets
                          and resource_path(t) in rewritten)
        if adjusted:
            progress(f"adjusting DRBD to the rewritten files: {', '.join(adjusted)}")
            boxes.on_both(m.ADJUST, m.Resources(tuple(adjusted)))
        if change.new_targets:
            _prepare(plan, boxes, change.new_targets, progress)
        progress("updating the cluster configuration (one versioned CIB patch)")
        first = make_plan(before_joining(config, change), plan.drbd).cib
        changed = _patch(pacemaker, _keep_stopped(first, live, change.gone_targets), live)
    except IscsihaError as exc:
        if change.create or change.new_targets:
            progress("failed: removing the volumes and DRBD resources this apply created")
            _undo(boxes, change, exc)
        raise
    try:
        if change.leaving or change.gone_targets:
            progress("waiting for the cluster to stop what leaves")
            pacemaker.wait(timeout=SETTLE_SECONDS + 30.0 * len(change.gone_targets))
        for target in change.reshaped:
            _reshape(plan, text, pacemaker, boxes, change, target, previous[target],
                     progress)
        if change.reshaped or change.gone_targets:
            changed = _patch(pacemaker, plan.cib, pacemaker.query()) or changed
        if change.gone_targets:
            pacemaker.wait(timeout=SETTLE_SECONDS + 30.0 * len(change.gone_targets))
            progress(f"removing the DRBD resources of {', '.join(change.gone_targets)}")
            boxes.on_both(m.REMOVE_RESOURCES, m.Resources(change.gone_targets))
        if grow:
            progress(f"growing {', '.join(f'{v.name} to {v.size} bytes' for v in grow)}")
            boxes.on_both(m.GROW_VOLUMES, volumes_request(grow))
            slots = plan.slots
            boxes.call(boxes.here, m.DRBD_RESIZE, m.Refs(tuple(
                f"{_target_of(plan, v.name)}/{slots[v.name].number}" for v in grow)))
        if change.delete:
            progress(f"deleting {', '.join(change.delete)} on both boxes")
            vg_of = {name: vg for f in facts.values() for name, vg in f.tagged.items()}
            boxes.on_both(m.DELETE_VOLUMES, m.VolumeGroups(tuple(
                (name, vg_of[name]) for name in change.delete)))
        boxes.on_both(m.WRITE_DESIRED, m.DesiredState(text))
    except IscsihaError as exc:
        raise IscsihaError([*exc.reports, Report(
            PARTLY_APPLIED, "apply", "after the CIB patch", "apply run again to finish",
            "the cluster configuration was changed; the steps after it did not all finish")]
        ) from exc
    return Changes(change.create, grow, change.delete, changed)


def _prepare(plan: Plan, boxes: Boxes, targets: tuple[str, ...], progress: Progress) -> None:
    """New targets' resources: metadata, up on both boxes, never-written volumes
    declared in sync (no initial full sync), then down for Pacemaker to start."""
    progress(f"preparing the DRBD resources of {', '.join(targets)} on both boxes")
    volumes = volume_refs(plan.drbd, targets)
    boxes.on_both(m.DRBD_METADATA, m.Refs(tuple(ref for ref, _ in volumes)))
    boxes.on_both(m.UP, m.Resources(targets))
    boxes.call(boxes.here, m.SYNC_NEW, m.SyncNew(tuple(volumes)))
    boxes.on_both(m.DOWN, m.Resources(targets))


def _reshape(plan: Plan, text: str, pacemaker: Cib, boxes: Boxes, change: Delta,
             target: str, before: DrbdResource, progress: Progress) -> None:
    """Volumes join and leave a running target's resource, with its clone in maintenance."""
    joining, leaving = change.joining.get(target, ()), change.leaving.get(target, ())
    clone = drbd_clone_id(target)
    promoted = _promoted_on(pacemaker.status(), clone)
    held = maintenance.hold(pacemaker, clone, progress)
    reports: list[Report] = []
    try:
        if leaving and promoted:
            progress(f"{target}: demoting the leaving volumes on {promoted}: "
                     f"{', '.join(leaving)}")
            boxes.call(promoted, m.DRBD_ROLE, m.Role("secondary", tuple(
                f"{target}/{before.volumes[v].number}" for v in leaving)))
        moves = [f"{', '.join(vs)} {what}"
                 for vs, what in ((joining, "joining"), (leaving, "leaving")) if vs]
        progress(f"{target}: DRBD resource file with {'; '.join(moves)}")
        boxes.on_both(m.WRITE_DRBD_FILES, drbd_files(text, plan, [target]))
        slots = plan.drbd[target].volumes
        new = tuple((f"{target}/{slots[v].number}", slots[v].minor) for v in joining)
        refs = m.Refs(tuple(ref for ref, _ in new))
        if new:
            boxes.on_both(m.DRBD_METADATA, refs)
        boxes.on_both(m.ADJUST, m.Resources((target,)))
        if new and promoted:
            boxes.call(boxes.here, m.SYNC_NEW, m.SyncNew(new))
            progress(f"{target}: promoting the joining volumes on {promoted}")
            boxes.call(promoted, m.DRBD_ROLE, m.Role("primary", refs.volumes))
    except IscsihaError as exc:
        reports += exc.reports
    finally:
        if held:
            reports += maintenance.release(pacemaker, clone, progress)
    if reports:
        raise IscsihaError(reports)


def _promoted_on(status_xml: str, clone: str) -> str | None:
    """The box where ``clone`` is Promoted, from crm_mon's XML; None when nowhere."""
    return next((node for el in ET.fromstring(status_xml).iter("clone")
                 if el.get("id") == clone
                 for node, role in clone_roles(el) if role == "Promoted"), None)


def volume_refs(drbd: Mapping[str, DrbdResource], targets: tuple[str, ...]
                 ) -> list[tuple[str, int]]:
    """[RES/NUMBER, minor] of every volume of ``targets``' resources, the reservations
    volume included."""
    return [(f"{t}/{slot.number}", slot.minor) for t in targets
            for slot in sorted([*drbd[t].volumes.values(),
                                *filter(None, [drbd[t].reservations_slot])],
                               key=lambda s: s.number)]


def _target_of(plan: Plan, volume: str) -> str:
    return next(t for t, res in plan.drbd.items() if volume in res.volumes)


def _patch(pacemaker: Cib, fragment: str, read: str) -> bool:
    """Patch the CIB to hold ``fragment``, as long as its configuration is still the one
    read as ``read`` (status updates in between are fine)."""
    def change(live: str) -> str:
        if _epochs(live) != _epochs(read):
            raise IscsihaError.single(
                "cib-changed", "CIB", " ".join(_epochs(live)), " ".join(_epochs(read)),
                "the cluster configuration changed while applying; nothing more was "
                "changed: check `iscsiha status` and apply again")
        return merge(live, fragment)

    return pacemaker.update(change)


def _epochs(cib_xml: str) -> tuple[str, str]:
    root = ET.fromstring(cib_xml)
    return root.get("admin_epoch", "0"), root.get("epoch", "0")


def _keep_stopped(fragment: str, live: str, targets: tuple[str, ...]) -> str:
    """``fragment`` plus the live clones, groups and constraints of deleted ``targets``,
    their clones told to stop: the order constraint then stops each group (its LUNs)
    before DRBD is demoted under it."""
    if not targets:
        return fragment
    root = ET.fromstring(fragment)
    resources, constraints = root.find("resources"), root.find("constraints")
    assert resources is not None and constraints is not None
    cib = ET.fromstring(live)
    clones = {drbd_clone_id(t) for t in targets}
    ids = clones | {target_group_id(t) for t in targets}
    for el in cib.iterfind("configuration/resources/*"):
        if el.get("id") not in ids:
            continue
        if el.get("id") in clones:
            meta = el.find("meta_attributes")
            if meta is None:
                meta = ET.SubElement(el, "meta_attributes", id=f"{el.get('id')}-meta")
            for nv in [nv for nv in meta if nv.get("name") == "target-role"]:
                meta.remove(nv)
            ET.SubElement(meta, "nvpair", id=f"{meta.get('id')}-target-role",
                          name="target-role", value="Stopped")
        resources.append(el)
    for el in cib.iterfind("configuration/constraints/*"):
        if {el.get(a) for a in ("rsc", "with-rsc", "first", "then")} & ids:
            constraints.append(el)
    return ET.tostring(root, encoding="unicode")


def drbd_files(text: str, plan: Plan, targets: list[str]) -> m.DrbdFiles:
    """``targets``' resource files, for each box to render from ``text`` itself."""
    return m.DrbdFiles(text, {t: m.Slots(plan.drbd[t].port, {
        v: (slot.number, slot.minor) for v, slot in plan.drbd[t].volumes.items()},
        plan.drbd[t].reservations) for t in targets})


def volumes_request(volumes: tuple[Volume, ...]) -> m.Volumes:
    return m.Volumes(tuple((v.name, v.volume_group, v.size) for v in volumes),
                     tuple((v.name, v.pool) for v in volumes if v.pool is not None))


def _pools(boxes: Boxes, pools: PoolChanges, progress: Progress) -> None:
    """Thin pools made and grown on both boxes before any volume goes into them; one
    made here stays if the apply fails later (empty, and the next apply uses it)."""
    def sizes(of: tuple[Pool, ...]) -> m.Volumes:
        return m.Volumes(tuple((p.name, p.volume_group, p.size) for p in of))

    if pools.create:
        progress(f"creating thin pool(s) on both boxes: "
                 f"{', '.join(p.name for p in pools.create)}")
        boxes.on_both(m.CREATE_POOLS, sizes(pools.create))
    if pools.grow:
        progress("growing thin pool(s) "
                 + ", ".join(f"{p.name} to {p.size} bytes" for p in pools.grow))
        boxes.on_both(m.GROW_VOLUMES, sizes(pools.grow))


def _undo(boxes: Boxes, change: Delta, cause: IscsihaError) -> None:
    try:
        boxes.on_both(m.REMOVE_RESOURCES, m.Resources(change.new_targets))
        boxes.on_both(m.DELETE_VOLUMES, m.VolumeGroups(tuple(
            (v.name, v.volume_group) for v in change.create)))
    except IscsihaError as exc:
        raise IscsihaError([*cause.reports, Report(
            "undo-failed", "volumes", ", ".join(v.name for v in change.create) or "-",
            "removed again after a failed apply (with the new targets' DRBD resources)",
            "could not be removed; remove them by hand (drbdadm down, lvremove) before "
            "retrying", ), *exc.reports]) from exc
