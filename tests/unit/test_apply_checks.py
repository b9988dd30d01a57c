"""apply's checks before it changes anything, and the CIB it sends for deletions."""

from __future__ import annotations

import xml.etree.ElementTree as ET
from collections.abc import Mapping
from dataclasses import replace
from ipaddress import ip_address
from typing import Any

import pytest

from iscsiha.commands.apply import _keep_stopped, _patch, _promoted_on, _with_reservations
from iscsiha.commands.apply_checks import (
    before_joining,
    check_deletes,
    check_facts,
    check_reshapes,
    delta,
    exported_volumes,
)
from iscsiha.errors import IscsihaError
from iscsiha.executors.pacemaker import Pacemaker
from iscsiha.model.identity import RESERVATIONS_SIZE
from iscsiha.model.load import load_data
from iscsiha.plan.cib_merge import merge
from iscsiha.plan.peer_ssh import authorized_keys
from iscsiha.plan.plan import make_plan
from iscsiha.protocol.messages import DiskState, Facts
from tests.unit import ssh_keys

MIB = 2**20
EXTENT = 4 * MIB


def _codes(exc: pytest.ExceptionInfo[IscsihaError]) -> list[str]:
    return [r.code for r in exc.value.reports]


def _facts(example: dict[str, Any], lvs: Mapping[str, int | None], free: int = 10 * 2**40,
           drbd: tuple[str, ...] = ("Primary", "Connected", "UpToDate", "UpToDate")
           ) -> dict[str, Facts]:
    one = Facts(vgs={"data": (free, EXTENT)}, lvs=dict(lvs),
                tagged={name: "data" for name, size in lvs.items() if size is not None},
                drbd={v["name"]: DiskState(*drbd) for v in example["volumes"]})
    return {"san-a": one, "san-b": one}


def test_new_volumes_need_space_and_a_free_name(example: dict[str, Any]) -> None:
    config = load_data(example)
    with pytest.raises(IscsihaError) as exc:
        check_facts(config, config.volumes, set(),
                    _facts(example, {"vmstore": 1, "db": None, "backup": None}, free=MIB))
    assert sorted(set(_codes(exc))) == ["no-space", "volume-exists"]


def test_existing_volumes_grow_only_while_replicating_and_never_shrink(
        example: dict[str, Any]) -> None:
    config = load_data(example)
    sizes = {"vmstore": 100 * 2**30, "db": 10 * 2**30, "backup": 500 * 2**30}
    running = set(sizes)
    assert check_facts(config, (), running, _facts(example, sizes)) == (config.volume("db"),)
    with pytest.raises(IscsihaError) as exc:
        check_facts(config, (), running, _facts(
            example, sizes, drbd=("Secondary", "WFConnection", "UpToDate", "DUnknown")))
    assert _codes(exc) == ["volume-not-replicating", "volume-not-replicating"]
    with pytest.raises(IscsihaError) as exc:
        check_facts(config, (), running, _facts(example, {**sizes, "db": 30 * 2**30}))
    assert set(_codes(exc)) == {"volume-shrink"}


def test_a_volume_no_running_target_exports_does_not_grow(example: dict[str, Any]) -> None:
    # Its DRBD metadata sits at the disk's end; only an attached DRBD moves it.
    config = load_data(example)
    sizes = {"vmstore": 100 * 2**30, "db": 10 * 2**30, "backup": 500 * 2**30}
    with pytest.raises(IscsihaError) as exc:
        check_facts(config, (), {"vmstore", "backup"}, _facts(example, sizes))
    assert set(_codes(exc)) == {"volume-not-exported"}


def test_an_lv_the_cluster_did_not_make_is_not_taken_as_a_volume(
        example: dict[str, Any]) -> None:
    config = load_data(example)
    facts = _facts(example, {"vmstore": 100 * 2**30, "db": 20 * 2**30, "backup": 500 * 2**30})
    facts["san-b"] = replace(facts["san-b"], tagged={"vmstore": "data", "backup": "data"})
    with pytest.raises(IscsihaError) as exc:
        check_facts(config, (), set(), facts)
    assert [(r.code, r.value) for r in exc.value.reports] == [("volume-missing", "db")]


def test_deleting_needs_confirmation_and_no_target_exporting_it() -> None:
    with pytest.raises(IscsihaError) as exc:
        check_deletes(("old", "used"), frozenset({"used", "typo"}), {"used": "target-vm-lio"})
    assert sorted(_codes(exc)) == ["delete-not-confirmed", "delete-not-needed", "volume-in-use"]
    check_deletes(("old",), frozenset({"old"}), {})  # confirmed and unused: allowed


def test_a_deleted_target_first_stays_in_the_cib_with_its_drbd_clone_stopped(
        example: dict[str, Any]) -> None:
    live = make_plan(load_data(example)).cib
    assert exported_volumes(f"<cib>{live}</cib>") == {
        "vmstore": "target-vm-lio", "db": "target-vm-lio", "backup": "target-backup-lio"}
    smaller = dict(example, volumes=example["volumes"][:2], targets=example["targets"][:1])
    fragment = ET.fromstring(_keep_stopped(make_plan(load_data(smaller)).cib,
                                           f"<cib>{live}</cib>", ("backup",)))
    clone = fragment.find("resources/clone[@id='drbd-backup-clone']")
    assert clone is not None
    roles = [nv.get("value") for nv in clone.iter("nvpair") if nv.get("name") == "target-role"]
    assert roles == ["Stopped"]
    # Its group and the order after the promotion stay, so the LUNs stop before DRBD.
    assert fragment.find("resources/group[@id='target-backup']") is not None
    assert fragment.find("constraints/rsc_order[@id='target-backup-after-drbd']") is not None


def test_a_deleted_targets_fence_constraint_is_merged_once(example: dict[str, Any]) -> None:
    fence = ('<rsc_location id="drbd-fence-by-handler-backup-drbd-backup-clone" '
             'rsc="drbd-backup-clone" node="san-b" score="-INFINITY"/>')
    live = make_plan(load_data(example)).cib.replace("<constraints>",
                                                     f"<constraints>{fence}", 1)
    live = f'<cib epoch="3">{live}</cib>'
    smaller = dict(example, volumes=example["volumes"][:2], targets=example["targets"][:1])
    merged = ET.fromstring(merge(live, _keep_stopped(make_plan(load_data(smaller)).cib,
                                                     live, ("backup",))))
    ids = [el.get("id") for el in merged.iterfind("configuration/constraints/*")]
    assert ids.count("drbd-fence-by-handler-backup-drbd-backup-clone") == 1


def _live(example: dict[str, Any]) -> Any:
    from iscsiha.plan.cib import previous_drbd
    return previous_drbd(f"<cib>{make_plan(load_data(example)).cib}</cib>")


def test_a_lun_added_and_one_removed_reshape_the_running_target(
        example: dict[str, Any]) -> None:
    previous = _live(example)
    example["volumes"].append({"name": "logs", "size": "1G"})
    vm = example["targets"][0]
    vm["luns"] = [lun for lun in vm["luns"] if lun["volume"] != "db"]
    vm["luns"].append({"lun": 7, "volume": "logs"})
    config = load_data(example)
    change = delta(config, previous, {"vmstore", "db", "backup"})
    assert [v.name for v in change.create] == ["logs"]
    assert change.delete == ()  # db stays a volume, exported by no target
    assert (dict(change.joining), dict(change.leaving)) == ({"vm": ("logs",)}, {"vm": ("db",)})
    assert change.new_targets == change.gone_targets == ()
    check_reshapes(config, previous, change)
    # What runs meanwhile: the target with only the LUNs it keeps.
    (vm_before,) = [t for t in before_joining(config, change).targets if t.name == "vm"]
    assert [lun.volume for lun in vm_before.luns] == ["vmstore"]


def test_a_volume_moves_to_another_target_only_through_an_unexported_step(
        example: dict[str, Any]) -> None:
    previous = _live(example)
    vm, backup = example["targets"]
    backup["luns"].append({"lun": 5, "volume": "db"})
    vm["luns"] = [lun for lun in vm["luns"] if lun["volume"] != "db"]
    config = load_data(example)
    with pytest.raises(IscsihaError) as exc:
        check_reshapes(config, previous, delta(config, previous, {"vmstore", "db", "backup"}))
    assert [(r.code, r.value) for r in exc.value.reports] == [("volume-changes-target", "db")]


def test_a_running_target_never_swaps_all_its_luns_at_once(example: dict[str, Any]) -> None:
    previous = _live(example)
    example["volumes"].append({"name": "logs", "size": "1G"})
    example["volumes"] = [v for v in example["volumes"] if v["name"] != "backup"]
    example["targets"][1]["luns"] = [{"lun": 0, "volume": "logs"}]
    config = load_data(example)
    with pytest.raises(IscsihaError) as exc:
        check_reshapes(config, previous, delta(config, previous, {"vmstore", "db", "backup"}))
    assert [(r.code, r.value) for r in exc.value.reports] == [
        ("target-replaces-all-luns", "backup")]


def test_the_peer_key_is_limited_to_the_forced_step_from_the_peer() -> None:
    line = authorized_keys(f"{ssh_keys.CLUSTER} key\n", [ip_address("10.10.0.12"),
                                                      ip_address("10.11.0.12")])
    assert line == ('restrict,from="10.10.0.12,10.11.0.12",command="/usr/bin/iscsiha node '
                    f'from-peer" {ssh_keys.CLUSTER}\n')


FRAGMENT = ('<configuration><crm_config><cluster_property_set id="iscsiha-options"/>'
            "</crm_config><resources/><constraints/><fencing-topology/><alerts/></configuration>")


class _BusyCluster(Pacemaker):
    """A CIB whose version moves under the first patches (a transition under way):
    Pacemaker refuses them as older until the cluster has settled. Pacemaker's own
    update() drives it."""

    def __init__(self, refusals: int) -> None:  # no runner: every call is answered here
        self.refusals, self.calls = refusals, []

    def query(self) -> str:
        self.calls.append("query")
        return ('<cib admin_epoch="0" epoch="7" num_updates="9"><configuration><crm_config/>'
                "<resources/><constraints/></configuration><status/></cib>")

    def patch(self, old: str, new: str) -> bool:
        self.calls.append("patch")
        if self.refusals:
            self.refusals -= 1
            raise IscsihaError.single("cib-patch-refused", "CIB", "Update was older than "
                                      "existing configuration", "a CIB unchanged since it was read")
        return True

    def wait(self, timeout: float) -> None:
        self.calls.append("wait")


def test_a_patch_refused_as_older_is_retried_after_the_cluster_settles() -> None:
    cluster = _BusyCluster(refusals=2)
    read = cluster.query()
    assert _patch(cluster, FRAGMENT, read) is True
    assert cluster.calls == ["query",  # the read apply planned from
                             "query", "patch", "wait", "query", "patch", "wait", "query",
                             "patch"]


def test_a_patch_refused_every_time_gives_up_with_the_refusal() -> None:
    cluster = _BusyCluster(refusals=99)
    with pytest.raises(IscsihaError) as info:
        cluster.update(lambda live: live, attempts=3)
    assert info.value.reports[0].code == "cib-patch-refused"
    assert cluster.calls.count("patch") == 3 and cluster.calls.count("wait") == 2


def test_the_promoted_box_of_a_clone_is_read_from_crm_mon() -> None:
    mon = """<crm_mon><resources>
      <clone id="drbd-vm-clone">
        <resource id="drbd-vm" role="Unpromoted"><node name="san-a"/></resource>
        <resource id="drbd-vm" role="Promoted"><node name="san-b"/></resource>
      </clone>
      <clone id="drbd-db-clone">
        <resource id="drbd-db" role="Unpromoted"><node name="san-a"/></resource>
      </clone></resources></crm_mon>"""
    assert _promoted_on(mon, "drbd-vm-clone") == "san-b"
    assert _promoted_on(mon, "drbd-db-clone") is None
    assert _promoted_on(mon, "drbd-gone-clone") is None


def test_a_new_target_s_reservations_lv_counts_against_its_volume_group(
        example: dict[str, Any]) -> None:
    config = load_data(example)
    facts = _facts(example, {"vmstore": None, "db": None, "backup": None})
    need = _with_reservations({}, config, ("vm", "backup"), facts)
    assert need == {node: {"data": 2 * RESERVATIONS_SIZE} for node in facts}
    # Exactly the volumes' space free, none for the reservations: refused, before anything.
    sizes = sum(-(-v.size // EXTENT) * EXTENT for v in config.volumes)
    with pytest.raises(IscsihaError) as exc:
        check_facts(config, config.volumes, set(),
                    _facts(example, {v.name: None for v in config.volumes}, free=sizes), need)
    assert _codes(exc) == ["no-space", "no-space"]
