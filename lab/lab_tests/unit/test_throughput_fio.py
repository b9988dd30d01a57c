"""The throughput benchmark's fio side: fio's JSON read into figures (samples written by
fio 3.33 itself, `--output-format=json --lat_percentiles=1` on a file on this host), the
command line, and the report's statistics, ratios and goals."""

from __future__ import annotations

import copy
import json
from pathlib import Path
from typing import Any

import pytest
from iscsiha_lab.throughput_fio import (
    TEST_NAMES,
    FioFailed,
    fio_argv,
    goals,
    overlap,
    parse_fio,
    spread,
    summarize,
)

DATA = Path(__file__).parent / "data"
READ_1M = (DATA / "fio-3.33-read-1m-qd1.json").read_text()
RANDWRITE_QD32 = (DATA / "fio-3.33-randwrite-4k-qd32.json").read_text()
SEQ_READ, SEQ_WRITE = TEST_NAMES["seq-read-1m"], TEST_NAMES["seq-write-1m"]
RAND_WRITE_32 = TEST_NAMES["rand-write-4k-qd32"]


def test_a_sequential_read_gives_mb_per_s_iops_and_latency_in_microseconds() -> None:
    figures = parse_fio(READ_1M, SEQ_READ)
    assert figures == {"mb_s": 53116.85, "iops": 50656.2, "lat_mean_us": 19.6,
                       "lat_p99_us": 25.5, "latency": "submission to completion",
                       "runtime_s": 2.0}


def test_a_random_write_is_read_from_the_write_section_not_the_empty_read_one() -> None:
    figures = parse_fio(RANDWRITE_QD32, RAND_WRITE_32)
    assert (figures["iops"], figures["mb_s"]) == (146434.8, 599.8)
    assert (figures["lat_mean_us"], figures["lat_p99_us"]) == (218.2, 643.1)


def test_a_job_that_did_no_io_in_the_tested_direction_is_a_failure() -> None:
    with pytest.raises(FioFailed, match="did no write I/O"):
        parse_fio(READ_1M, SEQ_WRITE)


def test_warnings_before_the_json_are_skipped() -> None:
    text = "fio: file hash not empty on exit\n" + READ_1M
    assert parse_fio(text, SEQ_READ)["iops"] == 50656.2


def _edited(text: str, edit: Any) -> str:
    data = json.loads(text)
    edit(data)
    return json.dumps(data)


def test_without_lat_percentiles_the_completion_latency_is_taken_and_said() -> None:
    def drop(data: dict[str, Any]) -> None:
        del data["jobs"][0]["read"]["lat_ns"]["percentile"]
    figures = parse_fio(_edited(READ_1M, drop), SEQ_READ)
    assert figures["latency"] == "completion only"
    clat = json.loads(READ_1M)["jobs"][0]["read"]["clat_ns"]
    assert figures["lat_p99_us"] == round(clat["percentile"]["99.000000"] / 1e3, 1)


@pytest.mark.parametrize("text, message", [
    ("", "expected one job"),
    ("fio: failed to open /dev/sdz: No such file or directory", "expected one job"),
    ("{not json", "not JSON"),
    (_edited(READ_1M, lambda d: d["jobs"].append(copy.deepcopy(d["jobs"][0]))),
     "expected one job"),
    (_edited(READ_1M, lambda d: d["jobs"][0].update(error=5)), "ended with error 5"),
    (_edited(READ_1M, lambda d: d["jobs"][0]["read"].update(bw_bytes="fast")),
     "not a number"),
    (_edited(READ_1M, lambda d: d["jobs"][0].pop("read")), "no read section"),
    ("[1, 2]", "expected one job"),
])
def test_output_that_is_not_one_successful_job_is_refused(text: str, message: str) -> None:
    with pytest.raises(FioFailed, match=message):
        parse_fio(text, SEQ_READ)


def test_every_test_is_direct_libaio_bounded_in_time_and_in_the_region() -> None:
    argv = fio_argv(RAND_WRITE_32, "/dev/drbd3", 10, 496)
    for flag in ("--direct=1", "--ioengine=libaio", "--rw=randwrite", "--bs=4k",
                 "--iodepth=32", "--size=496M", "--runtime=10", "--time_based",
                 "--output-format=json", "--filename=/dev/drbd3", "--lat_percentiles=1"):
        assert flag in argv
    fill = fio_argv(SEQ_WRITE, "/dev/sdb", 10, 496, size_mib=200)
    assert "--size=200M" in fill and "--time_based" not in fill
    assert not any(a.startswith("--runtime") for a in fill)


def _run(lv: float, drbd: float, lun: float | None) -> dict[str, dict[str, dict[str, Any]]]:
    def f(mb: float) -> dict[str, Any]:
        return {"mb_s": mb, "iops": mb, "lat_mean_us": 10.0, "lat_p99_us": 20.0}
    run = {"lv": {"seq-read-1m": f(lv)}, "drbd": {"seq-read-1m": f(drbd)}}
    if lun is not None:
        run["lun"] = {"seq-read-1m": f(lun)}
    return run


def test_ratios_are_taken_within_each_run_then_spread_over_the_runs() -> None:
    summary = summarize([_run(100, 80, 60), _run(200, 100, 90), _run(100, 100, 100)])
    read = summary["seq-read-1m"]
    assert read["lun"]["MB/s"] == {"runs": 3, "min": 60, "median": 90, "max": 100}
    # per run 0.75, 0.9, 1.0: not the ratio of the medians (90 / 100 = 0.9 by chance)
    assert read["ratios"]["lun/drbd"] == {"runs": 3, "min": 0.75, "median": 0.9, "max": 1.0}
    assert read["ratios"]["drbd/lv"] == {"runs": 3, "min": 0.5, "median": 0.8, "max": 1.0}
    assert read["ratios"]["lun/lv"]["median"] == 0.6


def test_a_failed_measurement_leaves_its_run_out_of_that_ratio_only() -> None:
    summary = summarize([_run(100, 80, None), _run(100, 50, 40)])
    read = summary["seq-read-1m"]
    assert read["ratios"]["lun/drbd"] == {"runs": 1, "min": 0.8, "median": 0.8, "max": 0.8}
    assert read["ratios"]["drbd/lv"]["runs"] == 2
    assert summary["seq-write-1m"]["lun"]["MB/s"] == spread([])
    assert summary["seq-write-1m"]["ratios"]["lun/lv"]["median"] is None


def test_a_zero_figure_below_gives_no_ratio() -> None:
    assert summarize([_run(0, 0, 10)])["seq-read-1m"]["ratios"]["lun/drbd"]["runs"] == 0


def test_the_share_of_a_measurement_during_the_resync() -> None:
    assert overlap(2, 12, 0, None) == 1.0  # still resyncing when it ended
    assert overlap(2, 12, 0, 7) == 0.5
    assert overlap(8, 18, 0, 7) == 0.0
    assert overlap(5, 5, 0, None) == 0.0


def test_goals_are_judged_on_the_medians_and_unknown_without_figures() -> None:
    summary = summarize([_run(100, 100, 85)])
    resync = {"during": {"seq-write-1m": {"of_normal": 0.4, "share_during_resync": 1.0},
                         "seq-read-1m": {"of_normal": None, "share_during_resync": 1.0}}}
    assert goals(summary, resync) == {
        "seq-write-1m lun/drbd >= 0.8": None, "seq-read-1m lun/drbd >= 0.8": True,
        "seq-write-1m-qd8 lun/drbd >= 0.8": None, "seq-read-1m-qd8 lun/drbd >= 0.8": None,
        "seq-write-1m during resync >= 0.5 of normal": False,
        "seq-read-1m during resync >= 0.5 of normal": None}
    assert goals(summarize([_run(100, 100, 79)]), None)["seq-read-1m lun/drbd >= 0.8"] is False


def test_a_resync_figure_taken_mostly_after_the_resync_judges_no_goal() -> None:
    resync = {"during": {"seq-write-1m": {"of_normal": 0.9, "share_during_resync": 0.5},
                         "seq-read-1m": {"of_normal": 0.3, "share_during_resync": 0.9}}}
    judged = goals(summarize([]), resync)
    assert judged["seq-write-1m during resync >= 0.5 of normal"] is None
    assert judged["seq-read-1m during resync >= 0.5 of normal"] is False
