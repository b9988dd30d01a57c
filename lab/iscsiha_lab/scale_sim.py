"""`tools/scale-sim`: Pacemaker's own scheduler on CIBs of several pairs in one cluster.

For each cluster size (boxes, N/2 pairs, T targets per pair) the CIB of scale_cib goes to
trixie's crm_simulate, run in a minimal trixie root (mmdebstrap, cached) with `chroot`,
so the scheduler is the one the appliance ships, not the host's. Per size: the cold
start (everything started from nothing, which also settles the cluster), then on the
settled cluster a pass with nothing to do and the transition after the first box is
lost, each timed several times (wall clock, CPU, peak memory), with the CIB's size and
the transition graph's actions. No mounts: crm_simulate reads and writes only files
under the root's /tmp. Prints JSON.
"""

from __future__ import annotations

import argparse
import bz2
import json
import os
import re
import signal
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import xml.etree.ElementTree as ET
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from iscsiha.errors import IscsihaError, Report, bounded
from iscsiha.views import format_reports
from iscsiha_lab.initiator_root import host_mirror
from iscsiha_lab.scale_cib import (
    ClusterShape,
    box_name,
    configuration,
    counts,
    pair_configs,
    whole_cib,
)
from iscsiha_lab.tools import CHROOT, MMDEBSTRAP

Progress = Callable[[str], None]
SUITE = "trixie"
CACHE_DIR = Path("/var/cache/iscsiha-scale-sim")
DEFAULT_ROOT = CACHE_DIR / f"{SUITE}-root"
CRM_SIMULATE = "/usr/sbin/crm_simulate"
CRM_MON = "/usr/sbin/crm_mon"
PACKAGES = ("pacemaker-cli-utils",)
# The appliance's image is trixie, whose Pacemaker is 3.0.
WANTED_VERSION = re.compile(r"3\.0\.\d+")
MAX_RUNS = 50
TARGET_RESOURCE = re.compile(r"^(?:drbd|target)-(p\d+-t\d+)(?:$|[-:])")


@dataclass(frozen=True)
class Timed:
    seconds: float  # wall clock
    cpu_seconds: float  # user + system
    max_rss_kib: int


@dataclass
class GraphSummary:
    """What a transition graph (crm_simulate -G) asks of the cluster."""

    synapses: int = 0
    # "rsc_op start", "crm_event stonith", "pseudo_event running", ...: how many of each.
    actions: Counter[str] = field(default_factory=Counter)
    fenced: list[str] = field(default_factory=list)
    # Target -> the nodes where a start or promote of its resources runs.
    targets_placed: dict[str, set[str]] = field(default_factory=dict)
    targets_touched: set[str] = field(default_factory=set)

    @property
    def operations(self) -> int:
        """Actions an agent or the fencer runs (pseudo events are bookkeeping)."""
        return sum(n for kind, n in self.actions.items() if not kind.startswith("pseudo_event"))


def parse_graph(text: str) -> GraphSummary:
    """Reads crm_simulate's transition graph XML; refuses anything else with a report."""
    try:
        root = ET.fromstring(text)
    except (ET.ParseError, ValueError) as exc:
        raise IscsihaError.single("bad-graph", "transition graph", bounded(text),
                                  "crm_simulate's -G output (XML)", str(exc)) from exc
    if root.tag != "transition_graph":
        raise IscsihaError.single("bad-graph", "transition graph root", bounded(root.tag),
                                  "transition_graph")
    out = GraphSummary()
    for synapse in root.findall("synapse"):
        out.synapses += 1
        for action in synapse.findall("action_set/*"):
            operation = action.get("operation", "?")
            out.actions[f"{action.tag} {operation}"] += 1
            node = action.get("on_node")
            if action.tag == "crm_event" and operation == "stonith" and node:
                out.fenced.append(node)
            if action.tag != "rsc_op":
                continue
            primitive = action.find("primitive")
            found = TARGET_RESOURCE.match(primitive.get("id", "") if primitive is not None
                                          else "")
            if found is None:
                continue
            out.targets_touched.add(found.group(1))
            if operation in ("start", "promote") and node:
                out.targets_placed.setdefault(found.group(1), set()).add(node)
    return out


def pacemaker_version(text: str) -> str:
    """The version `crm_simulate --version` prints on its first line."""
    found = re.match(r"Pacemaker (\S+)", text)
    if found is None:
        raise IscsihaError.single("bad-version", "crm_simulate --version", bounded(text),
                                  "a first line 'Pacemaker X.Y.Z'")
    return found.group(1)


def spread(values: Sequence[float]) -> dict[str, Any]:
    return {"median": round(statistics.median(values), 3), "min": round(min(values), 3),
            "max": round(max(values), 3), "runs": len(values)}


# -- the trixie root ---------------------------------------------------------------------


def ensure_root(root: Path, progress: Progress) -> Path:
    """The root holding trixie's crm_simulate; the default one is built once, cached."""
    if (root / CRM_SIMULATE.lstrip("/")).exists():
        return root
    if root != DEFAULT_ROOT:
        raise IscsihaError.single("no-scheduler", "--root", str(root),
                                  f"a root with {CRM_SIMULATE} (pacemaker-cli-utils), or the "
                                  f"default {DEFAULT_ROOT}, built when missing")
    if not os.access(MMDEBSTRAP.path, os.X_OK):
        raise IscsihaError.single("command-missing", "command", MMDEBSTRAP.path,
                                  f"installed (apt-get install {MMDEBSTRAP.package})")
    CACHE_DIR.mkdir(parents=True, exist_ok=True)
    mirror = host_mirror()
    with tempfile.TemporaryDirectory(dir=CACHE_DIR, prefix="build-") as work:
        partial = Path(work) / "root"
        progress(f"scale-sim: mmdebstrap {SUITE} {' '.join(PACKAGES)} from {mirror}")
        result = subprocess.run(
            [MMDEBSTRAP.path, "--variant=apt", f"--include={','.join(PACKAGES)}", SUITE,
             str(partial), mirror], capture_output=True, text=True, timeout=1800, check=False)
        if result.returncode != 0:
            raise IscsihaError.single("root-build-failed", "mmdebstrap", result.returncode,
                                      "exit code 0", result.stderr[-2000:])
        partial.rename(root)
    return root


class Scheduler:
    """Pacemaker's tools inside the root: files are handed over under the root's /tmp."""

    def __init__(self, root: Path, timeout: float) -> None:
        self.root = root
        self.timeout = timeout

    def version(self) -> str:
        result = subprocess.run([CHROOT.path, str(self.root), CRM_SIMULATE, "--version"],
                                capture_output=True, text=True, timeout=60, check=False)
        return pacemaker_version(result.stdout)

    def inside(self, path: Path) -> str:
        return "/" + str(path.relative_to(self.root))

    def simulate(self, *args: str) -> Timed:
        return self.run([CRM_SIMULATE, *args])

    def status(self, cib: Path) -> Timed:
        """crm_mon's XML of a CIB file: what `iscsiha status` and the console ask."""
        return self.run([CRM_MON, "--one-shot", "--output-as=xml"],
                        {"CIB_file": self.inside(cib)})

    def run(self, argv: Sequence[str], env: dict[str, str] | None = None) -> Timed:
        """One program in the root, timed; killed (by its pid) if it outlasts the timeout."""
        started = time.monotonic()
        proc = subprocess.Popen([CHROOT.path, str(self.root), *argv],
                                stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                                stderr=subprocess.PIPE, env={**os.environ, **(env or {})})
        timer = threading.Timer(self.timeout, proc.kill)
        timer.start()
        try:
            # Read stderr first (a full pipe would block it), then reap with its rusage.
            stderr = proc.stderr.read() if proc.stderr else b""
            _, status, usage = os.wait4(proc.pid, 0)
        except BaseException:  # interrupted: leave no crm_simulate running
            proc.kill()
            proc.wait()
            raise
        finally:
            timer.cancel()
        seconds = time.monotonic() - started
        proc.returncode = os.waitstatus_to_exitcode(status)
        if proc.returncode != 0:
            why = ("killed after the timeout" if seconds >= self.timeout
                   else stderr.decode(errors="replace")[-1000:])
            raise IscsihaError.single("scheduler-failed", "command", " ".join(argv),
                                      "exit code 0", f"exit {proc.returncode}: {why}")
        return Timed(seconds, usage.ru_utime + usage.ru_stime, usage.ru_maxrss)


# -- one cluster size --------------------------------------------------------------------


@dataclass(frozen=True)
class Bounds:
    runs: int  # timed runs of each measurement
    max_seconds: float  # ... unless they took this long together (at least one run)


def repeat(run: Callable[[], Timed], bounds: Bounds) -> list[Timed]:
    results: list[Timed] = []
    started = time.monotonic()
    while len(results) < bounds.runs and (
            not results or time.monotonic() - started < bounds.max_seconds):
        results.append(run())
    return results


def timing(results: Sequence[Timed]) -> dict[str, Any]:
    return {"seconds": spread([r.seconds for r in results]),
            "cpu_seconds": spread([r.cpu_seconds for r in results]),
            "max_rss_mib": round(max(r.max_rss_kib for r in results) / 1024, 1)}


def graph_figures(graph: GraphSummary) -> dict[str, Any]:
    return {"synapses": graph.synapses, "operations": graph.operations,
            "actions": dict(sorted(graph.actions.items()))}


MAX_SETTLE_TRANSITIONS = 3


def reusable(kept: Path, planned: str) -> bytes | None:
    """The settled CIB an earlier `--keep` wrote beside the same planned CIB, or None.

    The simulated execution of a 16-box cold start takes a quarter of an hour; its result
    depends only on the planned CIB, so it is reused only when that is byte for byte the
    one this code makes."""
    try:
        if (kept / "planned.xml").read_text() != planned:
            return None
        return (kept / "settled.xml").read_bytes()
    except OSError:
        return None


def measure(shape: ClusterShape, scheduler: Scheduler, bounds: Bounds, work: Path,
            progress: Progress, reuse: Path | None = None) -> dict[str, Any]:
    """Every figure of one cluster size; files stay in ``work``. ``reuse``: a `--keep`
    folder whose settled CIB of this size is taken instead of simulating it again."""
    configs = pair_configs(shape)
    planned, settled = work / "planned.xml", work / "settled.xml"
    planned.write_text(whole_cib(shape, configs))
    kept = reusable(reuse / f"{shape.boxes}-boxes", planned.read_text()) if reuse else None
    inside = scheduler.inside
    load = os.getloadavg()[0]
    progress(f"scale-sim: {shape.boxes} boxes: the cold start's transition")
    start_graph = work / "start-graph.xml"
    start_runs = repeat(lambda: scheduler.simulate(
        "-x", inside(planned), "-R", "-Q", "-G", inside(start_graph)), bounds)
    start = parse_graph(start_graph.read_text())
    # crm_simulate carries the transition out in memory: the settled cluster's status.
    carried = []
    if kept is not None:
        progress(f"scale-sim: {shape.boxes} boxes: the settled CIB of {reuse}")
        settled.write_bytes(kept)
    else:
        progress(f"scale-sim: {shape.boxes} boxes: carrying it out (simulated)")
        carried.append(scheduler.simulate("-x", inside(planned), "-S", "-Q",
                                          "-O", inside(settled)))
    transitions = 1
    idle = work / "idle-graph.xml"
    while True:
        scheduler.simulate("-x", inside(settled), "-R", "-Q", "-G", inside(idle))
        if parse_graph(idle.read_text()).synapses == 0:
            break
        if transitions == MAX_SETTLE_TRANSITIONS:
            raise IscsihaError.single("not-settled", "cluster", f"{shape.boxes} boxes",
                                      f"settled within {MAX_SETTLE_TRANSITIONS} transitions",
                                      f"{idle} still has actions")
        carried.append(scheduler.simulate("-x", inside(settled), "-S", "-Q",
                                          "-O", inside(settled)))
        transitions += 1
    progress(f"scale-sim: {shape.boxes} boxes: passes with nothing to do")
    idle_runs = repeat(lambda: scheduler.simulate("-x", inside(settled), "-R", "-Q"), bounds)
    lost = box_name(1)
    loss_graph = work / "box-loss-graph.xml"
    progress(f"scale-sim: {shape.boxes} boxes: {lost} lost")
    loss_runs = repeat(lambda: scheduler.simulate(
        "-x", inside(settled), "-R", "-Q", "-f", lost, "-G", inside(loss_graph)), bounds)
    loss = parse_graph(loss_graph.read_text())
    progress(f"scale-sim: {shape.boxes} boxes: crm_mon")
    status_runs = repeat(lambda: scheduler.status(settled), bounds)
    lost_pair = {t.name for t in configs[0].targets}
    peer = configs[0].cluster.nodes[1].name
    settled_text = settled.read_bytes()
    status = ET.fromstring(settled_text).find("status")
    return {
        "boxes": shape.boxes, "pairs": shape.pairs, "targets_per_pair": shape.targets_per_pair,
        "targets": shape.pairs * shape.targets_per_pair,
        "probes": "pair only" if shape.probe_pair_only else "every box",
        "sticky_fence_devices": shape.sticky_fence_devices,
        "load_average_before": round(load, 2),
        "cib": vars(counts(configuration(shape, configs))),
        "cib_bytes": {
            "planned": planned.stat().st_size, "settled": len(settled_text),
            "settled_bz2": len(bz2.compress(settled_text)),
            "status": 0 if status is None else len(ET.tostring(status)),
            "status_rows": 0 if status is None else len(status.findall(".//lrm_rsc_op")),
        },
        "cold_start": {**timing(start_runs), **graph_figures(start),
                       "simulated_execution_seconds": round(sum(r.seconds for r in carried), 1)
                       if carried else None,
                       "settled_cib_reused": kept is not None,
                       "transitions_to_settle": transitions},
        "settled_pass": timing(idle_runs),
        "box_loss": {
            "lost": lost, **timing(loss_runs), **graph_figures(loss),
            "fenced": loss.fenced,
            "targets_started_on_peer": sum(1 for t, nodes in loss.targets_placed.items()
                                           if t in lost_pair and nodes == {peer}),
            "targets_touched_outside_the_pair": sorted(loss.targets_touched - lost_pair),
        },
        "crm_mon": timing(status_runs),
        "load_average_after": round(os.getloadavg()[0], 2),
    }


# -- the command -------------------------------------------------------------------------


def box_counts(text: str) -> list[int]:
    out, bad = [], []
    for word in text.split(","):
        try:
            out.append(int(word))
        except ValueError:
            bad.append(word)
    if bad or not out:
        raise IscsihaError.single("bad-boxes", "--boxes", bounded(text),
                                  "comma-separated box counts, e.g. 2,4,8,16")
    return out


def parse_args(argv: Sequence[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="tools/scale-sim", description=__doc__.splitlines()[0])
    parser.add_argument("--boxes", default="2,4,8,16", help="cluster sizes (even)")
    parser.add_argument("--targets-per-pair", type=int, default=64)
    parser.add_argument("--runs", type=int, default=5, help="timed runs per measurement")
    parser.add_argument("--max-seconds", type=float, default=300.0,
                        help="no further runs of a measurement once its runs took this long")
    parser.add_argument("--timeout", type=float, default=1800.0,
                        help="seconds one crm_simulate may take before it is killed")
    parser.add_argument("--probe-everywhere", action="store_true",
                        help="probe every resource on every box (default: on its pair only)")
    parser.add_argument("--fence-devices-as-generated", action="store_true",
                        help="no stickiness on the fence devices (default: as designed)")
    parser.add_argument("--root", type=Path, default=DEFAULT_ROOT,
                        help="a root with trixie's crm_simulate (default: built when missing)")
    parser.add_argument("--keep", type=Path, help="copy each size's CIBs and graphs here")
    parser.add_argument("--reuse", type=Path,
                        help="a --keep folder: take its settled CIBs where the planned CIB "
                             "is the same, instead of simulating the cold start again")
    parser.add_argument("--output", type=Path, help="write the JSON here too")
    return parser.parse_args(argv)


def run(args: argparse.Namespace, progress: Progress) -> dict[str, Any]:
    problems = []
    if not 1 <= args.runs <= MAX_RUNS:
        problems.append(Report("bad-runs", "--runs", args.runs, f"1 to {MAX_RUNS}"))
    if not args.max_seconds > 0 or not args.timeout > 0:
        problems.append(Report("bad-bound", "--max-seconds/--timeout",
                               f"{args.max_seconds}/{args.timeout}", "positive seconds"))
    shapes = [ClusterShape(n, args.targets_per_pair, not args.probe_everywhere,
                           not args.fence_devices_as_generated)
              for n in box_counts(args.boxes)]
    for shape in shapes:
        try:
            shape.check()
        except IscsihaError as exc:
            problems += exc.reports
    if problems:
        raise IscsihaError(problems)
    root = ensure_root(args.root, progress)
    scheduler = Scheduler(root, args.timeout)
    version = scheduler.version()
    if not WANTED_VERSION.fullmatch(version):
        raise IscsihaError.single("wrong-pacemaker", f"crm_simulate in {root}", version,
                                  "trixie's Pacemaker 3.0.x, the appliance's")
    bounds = Bounds(args.runs, args.max_seconds)
    sizes = []
    (root / "tmp").mkdir(exist_ok=True)
    for shape in shapes:
        with tempfile.TemporaryDirectory(dir=root / "tmp", prefix="scale-sim-") as tmp:
            work = Path(tmp)
            sizes.append(measure(shape, scheduler, bounds, work, progress, args.reuse))
            if args.keep:
                keep = args.keep / f"{shape.boxes}-boxes"
                keep.mkdir(parents=True, exist_ok=True)
                for file in work.iterdir():
                    (keep / file.name).write_bytes(file.read_bytes())
    return {
        "tool": "tools/scale-sim", "argv": list(sys.argv[1:]),
        "date": time.strftime("%Y-%m-%d"), "pacemaker": version, "scheduler_root": str(root),
        "host": {"cpus": os.cpu_count(), "kernel": os.uname().release},
        "bounds": {"runs": args.runs, "max_seconds": args.max_seconds},
        "sizes": sizes,
    }


def _interrupted(signum: int, frame: object) -> None:
    raise KeyboardInterrupt


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(sys.argv[1:] if argv is None else argv)
    # A kill by pid stops the running crm_simulate too and removes the work files.
    signal.signal(signal.SIGTERM, _interrupted)

    def progress(line: str) -> None:
        print(line, file=sys.stderr, flush=True)

    try:
        result = run(args, progress)
    except IscsihaError as exc:  # the one error boundary
        print(format_reports(exc.reports), file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("tools/scale-sim: interrupted", file=sys.stderr)
        return 130
    text = json.dumps(result, indent=2) + "\n"
    if args.output:
        args.output.write_text(text)
    sys.stdout.write(text)
    return 0
