"""Thin LUNs in the lab: a thin pool on both boxes, a thin volume exported, written and
trimmed from the initiator; the pool fills and empties again on BOTH boxes (DRBD passes
the discards on), status and metrics show it, and overcommit is refused by apply.

On a target, volume and pool of their own, removed at the end (the pool by hand:
apply never removes a pool). Assumes the target agent enables UNMAP on the LUN
(LIO's emulate_tpu/emulate_tpws), so the initiator's disk reports LBPU=1.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import pytest
from iscsiha_lab.desired import cluster_data
from iscsiha_lab.initiator import MUTUAL, Initiator, iqn, wait_for
from iscsiha_lab.lab import Lab
from iscsiha_lab.pair import apply, converge, iscsiha

pytestmark = pytest.mark.lab
TARGET = "thint"  # its DRBD resource and its volume have the same name
POOL = "thinpool"
PORTAL = "10.99.30.108"  # apart from the other lab tests' portals
PRIMARY = "san-a"
BOXES = ("san-a", "san-b")
POOL_TABLE = {"name": POOL, "size": "256M", "fill_alert_percent": 90}
WRITTEN_MIB = 16
# 16 MiB of a 256 MiB pool is 6.25 %: the rise must show most of it, the fall most of it.
RISE_MIN = 5.0


def desired(lab: Lab, initiator_iqn: str, volume_size: str = "128M") -> dict[str, Any]:
    data = cluster_data(lab)
    data["pools"] = [POOL_TABLE]
    data["volumes"] = [{"name": TARGET, "size": volume_size, "pool": POOL}]
    data["targets"] = [{"name": TARGET, "iqn": iqn(TARGET), "portals": [PORTAL],
                        "preferred_node": PRIMARY, "failback": "manual",
                        "initiators": [initiator_iqn], "auth": MUTUAL,
                        "luns": [{"lun": 0, "volume": TARGET}]}]
    return data


def data_percent(lab: Lab, box: str) -> float:
    """The pool's Data% as lvs prints it on ``box``."""
    out = lab.exec(box, ["lvs", "--noheadings", "-o", "data_percent",
                         f"data/{POOL}"]).check().out
    return float(out.strip())


def in_sync(lab: Lab) -> bool:
    # Volume 0, the LUN: the resource also holds the target's reservations volume.
    out = lab.exec(PRIMARY, ["sh", "-c", f"drbdadm cstate {TARGET}/0; "
                                         f"drbdadm dstate {TARGET}/0"]
                   ).out.split()
    return out == ["Connected", "UpToDate/UpToDate"]


@pytest.fixture(scope="module")
def disk(lab: Lab) -> Iterator[tuple[Initiator, str]]:
    initiator = Initiator(lab)
    converge(lab, desired(lab, initiator.iqn))
    try:
        wait_for(f"{TARGET} connected and in sync", lambda: in_sync(lab))
        initiator.configure(iqn(TARGET), PORTAL)
        (found,) = initiator.login(iqn(TARGET), PORTAL, 1)
        yield initiator, found
    finally:
        initiator.logout(iqn(TARGET), PORTAL)
        initiator.try_run(*initiator.node(iqn(TARGET), PORTAL), "-o", "delete")
        # The thin volume goes while its pool is still desired, then the pool leaves the
        # desired state, and its LV is removed by hand on both boxes.
        plain = cluster_data(lab)
        converge(lab, dict(plain, pools=[POOL_TABLE], volumes=[], targets=[]))
        converge(lab, dict(plain, volumes=[], targets=[]))
        for box in BOXES:
            lab.exec(box, ["lvremove", "-q", "-y", "--", f"data/{POOL}"])


def test_the_pool_and_the_thin_volume_are_made_on_both_boxes(
        lab: Lab, disk: tuple[Initiator, str]) -> None:
    for box in BOXES:
        out = lab.exec(box, ["lvs", "--noheadings", "--separator", ",", "-o",
                             "lv_name,segtype,pool_lv,lv_tags", "data"]).check().out
        rows = {r[0]: r[1:] for r in ([f.strip() for f in line.split(",")]
                                      for line in out.splitlines() if line.strip())}
        assert rows[POOL] == ["thin-pool", "", "iscsiha"], (box, out)
        assert rows[TARGET] == ["thin", POOL, "iscsiha"], (box, out)


def test_drbd_runs_with_the_thin_disk_options(lab: Lab, disk: tuple[Initiator, str]) -> None:
    for box in BOXES:
        shown = lab.exec(box, ["drbdsetup", "show", TARGET]).check().out
        assert "discard-zeroes-if-aligned" in shown or "discard-zeroes-if-aligned" in \
            lab.exec(box, ["drbdsetup", "show", "--show-defaults", TARGET]).check().out
        assert "rs-discard-granularity" in shown, (box, shown)


def test_the_lun_offers_unmap(lab: Lab, disk: tuple[Initiator, str]) -> None:
    initiator, found = disk
    out = initiator.run("sg_vpd", "-p", "lbpv", found)
    # UNMAP and WRITE SAME with unmap (16 and 10), as trixie's sg3-utils prints them.
    assert {"LBPU=1", "LBPWS=1", "LBPWS10=1"} <= set(out.split()), out


def test_written_data_fills_both_pools_and_a_discard_empties_them(
        lab: Lab, disk: tuple[Initiator, str]) -> None:
    initiator, found = disk
    before = {box: data_percent(lab, box) for box in BOXES}
    initiator.run("sh", "-c", f"dd if=/dev/urandom of={found} bs=1M count={WRITTEN_MIB} "
                              "oflag=direct status=none")
    # Protocol C: an acknowledged write is on both disks already.
    filled = {box: data_percent(lab, box) for box in BOXES}
    print(f"\npool Data%: before {before}, after {WRITTEN_MIB} MiB written {filled}")
    for box in BOXES:
        assert filled[box] - before[box] >= RISE_MIN, (box, before, filled)
    initiator.run("blkdiscard", found, timeout=300)
    wait_for("the discards reached both pools", lambda: all(
        filled[box] - data_percent(lab, box) >= RISE_MIN for box in BOXES), timeout=60)
    after = {box: data_percent(lab, box) for box in BOXES}
    print(f"pool Data% after blkdiscard: {after}")
    for box in BOXES:
        assert after[box] <= before[box] + 0.5, (box, before, after)
    # Trimmed space reads zeroes, the same on both boxes (online verify would differ).
    assert initiator.run("sh", "-c", f"cmp -n {WRITTEN_MIB << 20} {found} /dev/zero "
                                     "&& echo zero").strip() == "zero"


def test_status_and_metrics_show_the_pool_on_both_boxes(
        lab: Lab, disk: tuple[Initiator, str]) -> None:
    out = iscsiha(lab, "status", "--json", "--sessions", box=PRIMARY).out
    pools = [p for p in json.loads(out)["pools"] if p["name"] == POOL]
    assert sorted(p["node"] for p in pools) == sorted(BOXES), out
    assert all(p["volume_group"] == "data" and 0 <= p["data_percent"] <= 100 for p in pools)
    metrics = iscsiha(lab, "metrics", box=PRIMARY).check().out
    assert f'iscsiha_pool_data_percent{{pool="{POOL}",volume_group="data",node="{PRIMARY}"}}' \
        in metrics


def test_thin_volumes_larger_than_the_pool_are_refused_without_overcommit(
        lab: Lab, disk: tuple[Initiator, str]) -> None:
    initiator, _ = disk
    result = apply(lab, desired(lab, initiator.iqn, volume_size="512M"))
    assert not result.ok and "pool-overcommitted" in result.out + result.err, \
        result.out + result.err
    for box in BOXES:  # nothing changed
        size = lab.exec(box, ["lvs", "--noheadings", "--units", "m", "--nosuffix", "-o",
                              "lv_size", f"data/{TARGET}"]).check().out
        assert float(size) == 128.0
