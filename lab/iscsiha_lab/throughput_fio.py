"""The throughput benchmark's fio side, pure: the six tests, the fio command line of each,
fio's JSON output read into figures, and the statistics and ratios of the report.

fio's JSON layout (fio 3.x, --output-format=json): {"fio version", "jobs": [{"jobname",
"error", "read": {...}, "write": {...}}]}; per direction "bw_bytes" (B/s), "iops",
"io_bytes", "runtime" (ms) and "lat_ns" {"mean", "percentile": {"99.000000": ns}}, the
percentiles there only with --lat_percentiles=1 (else under "clat_ns", without the
submission time).
"""

from __future__ import annotations

import json
import statistics
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

PLACES = ("lv", "drbd", "lun")  # box-local scratch LV, DRBD device on the Primary, the LUN
RATIOS = (("lun", "drbd"), ("drbd", "lv"), ("lun", "lv"))
RESYNC_SHARE = 0.9  # of a measurement during the resync, for its figure to judge the goal


@dataclass(frozen=True)
class FioTest:
    name: str
    rw: str  # fio's --rw
    block: str  # fio's --bs
    depth: int
    unit: str  # the figure that matters: "MB/s" (sequential) or "IOPS" (random)


# Writes before reads: the reads then read what the writes left, on every place alike.
TESTS = (
    FioTest("seq-write-1m", "write", "1M", 1, "MB/s"),
    FioTest("seq-read-1m", "read", "1M", 1, "MB/s"),
    # A hypervisor streams with several I/Os in flight: the iSCSI hop and DRBD's then
    # overlap, where at depth 1 each 1 MiB crosses them one after the other.
    FioTest("seq-write-1m-qd8", "write", "1M", 8, "MB/s"),
    FioTest("seq-read-1m-qd8", "read", "1M", 8, "MB/s"),
    FioTest("rand-write-4k-qd1", "randwrite", "4k", 1, "IOPS"),
    FioTest("rand-write-4k-qd32", "randwrite", "4k", 32, "IOPS"),
    FioTest("rand-read-4k-qd1", "randread", "4k", 1, "IOPS"),
    FioTest("rand-read-4k-qd32", "randread", "4k", 32, "IOPS"),
)
TEST_NAMES = {t.name: t for t in TESTS}


class FioFailed(Exception):
    """fio's output is not a successful run of one job (the message says why)."""


def fio_argv(test: FioTest, device: str, runtime_s: int, region_mib: int,
             size_mib: int | None = None) -> list[str]:
    """One bounded fio job on ``device``: direct I/O through libaio over its first
    ``region_mib`` MiB, for ``runtime_s`` seconds, or once over ``size_mib`` MiB when
    that is given (the resync run's fill)."""
    bound = ([f"--size={size_mib}M"] if size_mib is not None
             else [f"--size={region_mib}M", f"--runtime={runtime_s}", "--time_based"])
    return ["fio", f"--name={test.name}", f"--filename={device}", "--direct=1",
            "--ioengine=libaio", f"--rw={test.rw}", f"--bs={test.block}",
            f"--iodepth={test.depth}", "--numjobs=1", "--offset=0", *bound,
            "--randrepeat=0", "--norandommap", "--lat_percentiles=1",
            "--output-format=json"]


def _number(data: Mapping[str, Any], key: str, where: str) -> float:
    value = data.get(key)
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise FioFailed(f"{where}.{key} is {value!r}, not a number")
    return float(value)


def parse_fio(text: str, test: FioTest) -> dict[str, Any]:
    """The figures of ``test``'s direction from fio's JSON output: MB/s (10^6 bytes),
    IOPS, mean and 99th percentile latency in microseconds."""
    start = text.find("{")  # fio may print warnings before its JSON
    try:
        data = json.loads(text[start:]) if start >= 0 else None
    except ValueError as exc:
        raise FioFailed(f"output is not JSON: {exc}; begins {text[:120]!r}") from exc
    jobs = data.get("jobs") if isinstance(data, dict) else None
    if not isinstance(jobs, list) or len(jobs) != 1 or not isinstance(jobs[0], dict):
        raise FioFailed(f"expected one job in fio's JSON, got {str(jobs)[:120]}")
    job = jobs[0]
    if job.get("error"):
        raise FioFailed(f"job {job.get('jobname')!r} ended with error {job.get('error')}")
    direction = "read" if "read" in test.rw else "write"
    figures = job.get(direction)
    if not isinstance(figures, dict):
        raise FioFailed(f"no {direction} section in job {job.get('jobname')!r}")
    if _number(figures, "io_bytes", direction) <= 0:
        raise FioFailed(f"job {job.get('jobname')!r} did no {direction} I/O")
    lat, kind = _section(figures, "lat_ns"), "lat"
    if "percentile" not in lat:  # without --lat_percentiles
        lat, kind = _section(figures, "clat_ns"), "clat"
    p99 = _section(lat, "percentile").get("99.000000")
    return {
        "mb_s": round(_number(figures, "bw_bytes", direction) / 1e6, 2),
        "iops": round(_number(figures, "iops", direction), 1),
        "lat_mean_us": round(_number(lat, "mean", f"{direction}.{kind}_ns") / 1e3, 1),
        "lat_p99_us": round(float(p99) / 1e3, 1) if isinstance(p99, (int, float)) else None,
        "latency": "submission to completion" if kind == "lat" else "completion only",
        "runtime_s": round(_number(figures, "runtime", direction) / 1e3, 2),
    }


def _section(data: Mapping[str, Any], key: str) -> dict[str, Any]:
    value = data.get(key)
    return value if isinstance(value, dict) else {}


def headline(test: FioTest, figures: Mapping[str, Any]) -> float:
    """The one figure a test is compared by: MB/s for sequential, IOPS for random."""
    return float(figures["mb_s" if test.unit == "MB/s" else "iops"])


def spread(values: Sequence[float]) -> dict[str, Any]:
    """min / median / max of the runs' values (None for no runs)."""
    if not values:
        return {"runs": 0, "min": None, "median": None, "max": None}
    return {"runs": len(values), "min": min(values),
            "median": round(statistics.median(values), 2), "max": max(values)}


def ratio(top: float | None, bottom: float | None) -> float | None:
    if top is None or bottom is None or bottom <= 0:
        return None
    return round(top / bottom, 3)


def summarize(runs: Sequence[Mapping[str, Mapping[str, Mapping[str, Any]]]]) -> dict[str, Any]:
    """Per test: per place the spread of its headline figure and latencies over the runs
    (``runs``: run -> place -> test name -> figures; a failed measurement is absent),
    and the ratios lun/drbd, drbd/lv, lun/lv of each run, with their spread. A ratio
    is taken within one run, so both figures saw the same lab at the same time."""
    out: dict[str, Any] = {}
    for test in TESTS:
        places: dict[str, Any] = {}
        for place in PLACES:
            seen = [run[place][test.name] for run in runs if test.name in run.get(place, {})]
            places[place] = {test.unit: spread([headline(test, f) for f in seen]),
                             "lat_mean_us": spread([f["lat_mean_us"] for f in seen]),
                             "lat_p99_us": spread([f["lat_p99_us"] for f in seen
                                                   if f["lat_p99_us"] is not None])}
        ratios = {}
        for top, bottom in RATIOS:
            values = [r for run in runs if (r := ratio(
                _figure(run, top, test), _figure(run, bottom, test))) is not None]
            ratios[f"{top}/{bottom}"] = spread(values)
        out[test.name] = {"unit": test.unit, **places, "ratios": ratios}
    return out


def _figure(run: Mapping[str, Mapping[str, Mapping[str, Any]]], place: str,
            test: FioTest) -> float | None:
    figures = run.get(place, {}).get(test.name)
    return None if figures is None else headline(test, figures)


def overlap(start: float, end: float, busy_from: float, busy_to: float | None) -> float:
    """The share (0..1) of [start, end] that falls in [busy_from, busy_to] (an open end:
    still busy): how much of a measurement ran during the resync."""
    if end <= start:
        return 0.0
    to = end if busy_to is None else busy_to
    return round(max(0.0, min(end, to) - max(start, busy_from)) / (end - start), 3)


def goals(summary: Mapping[str, Any], resync: Mapping[str, Any] | None) -> dict[str, Any]:
    """The issue's goals against the medians: the LUN at >= 0.8x the DRBD device for
    sequential I/O; during a resync >= 0.5x of normal (None: not measured, or not
    enough of the measurement during the resync)."""
    out: dict[str, Any] = {}
    for name in ("seq-write-1m", "seq-read-1m", "seq-write-1m-qd8", "seq-read-1m-qd8"):
        median = summary.get(name, {}).get("ratios", {}).get("lun/drbd", {}).get("median")
        out[f"{name} lun/drbd >= 0.8"] = None if median is None else median >= 0.8
    for name, figures in (resync or {}).get("during", {}).items():
        share = figures.get("of_normal")
        # A figure mostly taken after the resync ended says nothing about the goal.
        during = figures.get("share_during_resync", 0.0) >= RESYNC_SHARE
        out[f"{name} during resync >= 0.5 of normal"] = (
            share >= 0.5 if share is not None and during else None)
    return out
