"""`iscsiha verify` on a lab box: a clean verify reports 0, and blocks written behind
DRBD's back on the Secondary's disk are found, counted and recorded.

On a target and volume of their own (no other test reads them, no initiator logs in),
deleted at the end: the garbage is written to the Secondary's backing LV, in its data
area (DRBD's internal metadata is at the end of the LV), where only a verify finds it.
"""

from __future__ import annotations

import json
from collections.abc import Iterator

import pytest
from iscsiha_lab.desired import cluster_data
from iscsiha_lab.initiator import MUTUAL, iqn, wait_for
from iscsiha_lab.lab import Lab
from iscsiha_lab.pair import converge, iscsiha

pytestmark = pytest.mark.lab
TARGET = "verifyt"  # its DRBD resource and its volume have the same name
PORTAL = "10.99.30.107"  # apart from the other lab tests' portals
PRIMARY, SECONDARY = "san-a", "san-b"
RECORD = "/var/lib/iscsiha/verify.json"
BLOCKS = 4  # 4 KiB blocks of garbage: DRBD verifies in 4 KiB blocks


def in_sync(lab: Lab) -> bool:
    out = lab.exec(PRIMARY, ["sh", "-c", f"drbdadm role {TARGET}/0; drbdadm cstate {TARGET}/0; "
                                         f"drbdadm dstate {TARGET}/0"]).out.split()
    return out == ["Primary/Secondary", "Connected", "UpToDate/UpToDate"]


@pytest.fixture(scope="module")
def exported(lab: Lab) -> Iterator[None]:
    data = cluster_data(lab)
    plain = dict(data, volumes=[], targets=[])
    data["volumes"] = [{"name": TARGET, "size": "32M"}]
    data["targets"] = [{"name": TARGET, "iqn": iqn(TARGET), "portals": [PORTAL],
                        "preferred_node": PRIMARY, "failback": "manual",
                        "initiators": [iqn("verify-hv")], "auth": MUTUAL,
                        "luns": [{"lun": 0, "volume": TARGET}]}]
    converge(lab, data)
    try:
        wait_for(f"{TARGET} Primary on {PRIMARY}, connected, in sync", lambda: in_sync(lab))
        yield
    finally:
        converge(lab, plain)


def record(lab: Lab) -> dict[str, object]:
    found = json.loads(lab.exec(PRIMARY, ["cat", RECORD]).check().out)["resources"][TARGET]
    assert isinstance(found, dict)
    return found


def test_the_resource_file_asks_for_a_verify_alg(lab: Lab, exported: None) -> None:
    shown = lab.exec(PRIMARY, ["drbdsetup", "show", TARGET]).check().out
    assert "verify-alg" in shown and "crc32c" in shown


def test_a_clean_verify_reports_0_and_the_metrics_show_it(lab: Lab, exported: None) -> None:
    ran = iscsiha(lab, "verify", "--timeout", "600", box=PRIMARY, timeout=900)
    assert ran.ok, ran.out + ran.err
    assert f"{TARGET}: verified" in ran.err and "identical" in ran.err
    assert record(lab)["outcome"] == "ok" and record(lab)["out_of_sync_bytes"] == 0
    metrics = iscsiha(lab, "metrics", box=PRIMARY).check().out
    assert f'iscsiha_drbd_verify_last_out_of_sync_bytes{{resource="{TARGET}"}} 0' in metrics
    # The Secondary verifies nothing: the box serving a resource verifies it.
    other = iscsiha(lab, "verify", "--timeout", "600", box=SECONDARY, timeout=900)
    assert other.ok and f"{TARGET}: skipped: not Primary here" in other.err


def test_blocks_changed_behind_drbds_back_are_found(lab: Lab, exported: None) -> None:
    lv = f"/dev/data/{TARGET}"
    lab.exec(SECONDARY, ["dd", "if=/dev/urandom", f"of={lv}", "bs=4096", f"count={BLOCKS}",
                         "seek=256", "oflag=direct", "conv=notrunc"]).check()
    ran = iscsiha(lab, "verify", "--timeout", "600", box=PRIMARY, timeout=900)
    assert ran.returncode == 1, ran.out + ran.err
    assert f"not verified identical: {TARGET}" in ran.err
    found = record(lab)
    assert found["outcome"] == "mismatch"
    # DRBD counts in 4 KiB bitmap blocks: these 4, or a few more if its verify
    # requests are larger than a block; never 0.
    assert isinstance(found["out_of_sync_bytes"], int)
    assert BLOCKS * 4096 <= found["out_of_sync_bytes"] <= 64 * 4096
    kernel = lab.exec(PRIMARY, ["dmesg"]).check().out
    assert "Online verify found" in kernel
