"""`iscsiha-lab throughput-bench` on the lab, short (one run, 3 s per test, a 64 MiB bench
volume): every place and test measured, the settings asked for in force on the boxes and
in the session, a resync measured, and the lab left with the volumes it had.

By hand only (ISCSIHA_BENCH_TEST=1): it takes 3-4 minutes of a CI run that has no room
for them, and it checks the benchmark's tool, not the product (the bench itself is
run by hand too, its JSON in docs/bench/)."""

from __future__ import annotations

import os
from typing import Any

import pytest
from iscsiha_lab import throughput_bench
from iscsiha_lab.lab import Lab
from iscsiha_lab.pair import BOXES
from iscsiha_lab.throughput_fio import PLACES, RATIOS, TESTS

pytestmark = [pytest.mark.lab, pytest.mark.skipif(
    os.environ.get("ISCSIHA_BENCH_TEST") != "1",
    reason="by hand: ISCSIHA_BENCH_TEST=1 runs the throughput bench's lab test (3-4 "
           "minutes CI has no room for)")]


def volumes(lab: Lab) -> dict[str, list[str]]:
    return {box: sorted(lab.exec(box, ["lvs", "--noheadings", "-o", "lv_name", "data"])
                        .check().out.split()) for box in BOXES}


@pytest.fixture(scope="module")
def report(lab: Lab) -> dict[str, Any]:
    before = volumes(lab)
    options = throughput_bench.parse_options(
        runs=1, runtime_s=3, size_mib=64, resync=True, fill_mib=32, resync_timeout_s=300,
        label="lab-test", drbd="max-buffers=8000,c-max-rate=102400",
        iscsi="MaxBurstLength=131072,FirstBurstLength=65536",
        initiator="node.session.queue_depth=16,node.session.iscsi.MaxBurstLength=131072")
    result = throughput_bench.bench(lab, options, lambda line: print(line, flush=True))
    result["volumes_before"], result["volumes_after"] = before, volumes(lab)
    return result


def test_every_place_and_test_is_measured_without_failure(report: dict[str, Any]) -> None:
    assert report["aborted"] is None and report["failures"] == []
    (run,) = report["runs"]
    for place in PLACES:
        for test in TESTS:
            figures = run[place][test.name]
            assert figures["mb_s"] > 0 and figures["iops"] > 0 and figures["lat_mean_us"] > 0
    for test in TESTS:
        for top, bottom in RATIOS:
            assert report["summary"][test.name]["ratios"][f"{top}/{bottom}"]["runs"] == 1


def test_the_settings_asked_for_are_in_force_before_and_after_the_runs(
        report: dict[str, Any]) -> None:
    for key in ("in_force", "in_force_after"):
        seen = report[key]
        for box in BOXES:
            assert seen["drbd"][box]["max-buffers"] == "8000"
        assert seen["lio_tpg"]["MaxBurstLength"] == "131072"
        assert seen["negotiated"]["MaxBurstLength"] == "131072"
        assert seen["negotiated"]["FirstBurstLength"] == "65536"
        assert seen["initiator_queue_depth"] == "16"


def test_a_resync_is_measured_and_compared_with_normal(report: dict[str, Any]) -> None:
    resync = report["resync"]
    assert resync["resync_s"] is not None and resync["resynced_kib"] > 0
    for name in ("seq-write-1m", "seq-read-1m"):
        assert resync["during"][name]["of_normal"] is not None
        assert 0 <= resync["during"][name]["share_during_resync"] <= 1


def test_the_lab_keeps_its_volumes_and_loses_the_bench_ones(report: dict[str, Any]) -> None:
    assert report["volumes_after"] == report["volumes_before"]
    for lvs in report["volumes_after"].values():
        assert throughput_bench.NAME not in lvs and throughput_bench.SCRATCH not in lvs
