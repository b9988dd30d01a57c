"""apply's checks before it changes anything, and the CIB it sends for deletions."""

from __future__ import annotations

import xml.etree.ElementTree as ET
from collections.abc import Mapping
from typing import Any

import pytest

from iscsiha.commands.apply import (
    _check_deletes,
    _check_facts,
    _keep_stopped,
    _patch,
    exported_volumes,
)
from iscsiha.errors import IscsihaError
from iscsiha.executors.pacemaker import Pacemaker
from iscsiha.model.load import load_data
from iscsiha.plan.peer_ssh import authorized_keys
from iscsiha.plan.plan import make_plan

MIB = 2**20
EXTENT = 4 * MIB


def _codes(exc: pytest.ExceptionInfo[IscsihaError]) -> list[str]:
    return [r.code for r in exc.value.reports]


def _facts(example: dict[str, Any], lvs: Mapping[str, int | None], free: int = 10 * 2**40,
           drbd: tuple[str, ...] = ("Primary", "Connected", "UpToDate", "UpToDate")
           ) -> dict[str, Any]:
    one = {"vgs": {"data": [free, EXTENT]}, "lvs": lvs,
           "drbd": {v["name"]: list(drbd) for v in example["volumes"]}}
    return {"san-a": one, "san-b": one}


def test_new_volumes_need_space_and_a_free_name(example: dict[str, Any]) -> None:
    config = load_data(example)
    with pytest.raises(IscsihaError) as exc:
        _check_facts(config, config.volumes,
                     _facts(example, {"vmstore": 1, "db": None, "backup": None}, free=MIB))
    assert sorted(set(_codes(exc))) == ["no-space", "volume-exists"]


def test_existing_volumes_grow_only_while_replicating_and_never_shrink(
        example: dict[str, Any]) -> None:
    config = load_data(example)
    sizes = {"vmstore": 100 * 2**30, "db": 10 * 2**30, "backup": 500 * 2**30}
    assert _check_facts(config, (), _facts(example, sizes)) == (config.volume("db"),)
    with pytest.raises(IscsihaError) as exc:
        _check_facts(config, (), _facts(example, sizes,
                                        drbd=("Secondary", "WFConnection", "UpToDate", "DUnknown")))
    assert _codes(exc) == ["volume-not-replicating", "volume-not-replicating"]
    with pytest.raises(IscsihaError) as exc:
        _check_facts(config, (), _facts(example, {**sizes, "db": 30 * 2**30}))
    assert set(_codes(exc)) == {"volume-shrink"}


def test_deleting_needs_confirmation_and_no_target_exporting_it() -> None:
    with pytest.raises(IscsihaError) as exc:
        _check_deletes(("old", "used"), frozenset({"used", "typo"}), {"used": "target-vm-lio"})
    assert sorted(_codes(exc)) == ["delete-not-confirmed", "delete-not-needed", "volume-in-use"]
    _check_deletes(("old",), frozenset({"old"}), {})  # confirmed and unused: allowed


def test_a_deleted_volume_first_stays_in_the_cib_stopped(example: dict[str, Any]) -> None:
    live = make_plan(load_data(example)).cib
    assert exported_volumes(f"<cib>{live}</cib>") == {
        "vmstore": "target-vm-lio", "db": "target-vm-lio", "backup": "target-backup-lio"}
    smaller = dict(example, volumes=example["volumes"][:2], targets=example["targets"][:1])
    fragment = _keep_stopped(make_plan(load_data(smaller)).cib, live, ("backup",))
    clone = ET.fromstring(fragment).find("resources/clone[@id='drbd-backup-clone']")
    assert clone is not None
    roles = [nv.get("value") for nv in clone.iter("nvpair") if nv.get("name") == "target-role"]
    assert roles == ["Stopped"]


def test_the_peer_key_is_limited_to_the_forced_step_from_the_peer() -> None:
    line = authorized_keys("ssh-ed25519 AAAA key", ["10.10.0.12", "10.11.0.12"])  # type: ignore[list-item]
    assert line == ('restrict,from="10.10.0.12,10.11.0.12",command="/usr/bin/iscsiha node '
                    'from-peer" ssh-ed25519 AAAA key\n')


FRAGMENT = ('<configuration><crm_config><cluster_property_set id="iscsiha-options"/>'
            "</crm_config><resources/><constraints/></configuration>")


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
