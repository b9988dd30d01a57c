"""`iscsiha-lab throughput-bench`: what a LUN delivers, against the same volume's DRBD
device on the serving box and a box-local LV beside it, with fio; then the LUN during a
resync. Run by hand on a lab that is up; prints JSON (docs/throughput.md).

It adds a bench volume and target ("tput") to the desired state it finds, measures, and
applies the desired state it found again (which deletes them). It writes to the bench
volume's DRBD device on the Primary (replicated) and to a scratch LV of its own, never to
a DRBD device's backing LV. Every wait and every fio run is bounded; a lab that fails
ends the benchmark with what it measured so far ("aborted").
"""

from __future__ import annotations

import threading
import time
import tomllib
from collections.abc import Callable
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from functools import partial
from typing import Any

from iscsiha.commands.node_steps import DESIRED_PATH
from iscsiha.errors import IscsihaError, Report
from iscsiha_lab.failover_bench import wait_until
from iscsiha_lab.guest import GuestResult
from iscsiha_lab.initiator import HV_SECRET, Initiator, iqn
from iscsiha_lab.lab import Lab
from iscsiha_lab.pair import (
    BOXES,
    INITIATOR_SETTINGS,
    CheckFailed,
    ask,
    converge,
    fence_constraints,
    other,
    resync_kib,
    target_on,
)
from iscsiha_lab.throughput_fio import (
    PLACES,
    TEST_NAMES,
    TESTS,
    FioFailed,
    FioTest,
    fio_argv,
    goals,
    headline,
    overlap,
    parse_fio,
    ratio,
    summarize,
)
from iscsiha_lab.throughput_settings import (
    Settings,
    as_dict,
    drbd_commands,
    drbd_shown,
    negotiated,
    parse_settings,
    tpg_dir,
)

Progress = Callable[[str], None]
NAME = "tput"  # the bench volume, its target and its DRBD resource
# Its LUN as DRBD names it: volume 0 of the resource, which also holds the reservations.
VOLUME = f"{NAME}/0"
IQN = iqn(NAME)
PORTAL = "10.99.30.125"  # on the storage network, apart from the lab tests' portals
SCRATCH = "tputlocal"  # the box-local LV, in the data volume group
META_MIB = 16  # left at the end of each place: DRBD keeps its metadata there
SETTLE = 600.0  # bound for the bench target to come up, and for the pair to settle


@dataclass(frozen=True)
class ThroughputOptions:
    runs: int
    runtime_s: int
    size_mib: int
    resync: bool
    fill_mib: int
    resync_timeout_s: int
    label: str
    settings: Settings

    @property
    def region_mib(self) -> int:
        return self.size_mib - META_MIB


def parse_options(runs: int, runtime_s: int, size_mib: int, resync: bool,
                  fill_mib: int | None, resync_timeout_s: int, label: str, drbd: str,
                  iscsi: str, initiator: str) -> ThroughputOptions:
    """The command line checked, every problem at once, before the lab is touched."""
    problems: list[Report] = []
    for option, value, low, high in (("--runs", runs, 1, 20), ("--runtime", runtime_s, 3, 120),
                                     ("--size-mib", size_mib, 64, 768),
                                     ("--resync-timeout", resync_timeout_s, 30, 3600)):
        if not low <= value <= high:
            problems.append(Report("bad-number", option, value, f"{low} to {high}"))
    fill = size_mib - META_MIB if fill_mib is None else fill_mib
    if not 1 <= fill <= size_mib - META_MIB:
        problems.append(Report("bad-number", "--fill-mib", fill_mib,
                               f"1 to the bench region, --size-mib - {META_MIB}"))
    if len(label) > 60 or not all(c.isalnum() or c in "-_.+=," for c in label):
        problems.append(Report("bad-label", "--label", label[:80],
                               "up to 60 letters, digits and - _ . + = ,"))
    try:
        settings = parse_settings(drbd, iscsi, initiator)
    except IscsihaError as exc:
        problems += exc.reports
    if problems:
        raise IscsihaError(problems)
    return ThroughputOptions(runs, runtime_s, size_mib, resync, fill, resync_timeout_s,
                             label, settings)


def bench_desired(found: dict[str, Any], initiator_iqn: str, size_mib: int) -> dict[str, Any]:
    """The desired state found with the bench volume and target added."""
    data = dict(found)
    data["volumes"] = [*found.get("volumes", []), {"name": NAME, "size": f"{size_mib}M"}]
    data["targets"] = [*found.get("targets", []), {
        "name": NAME, "iqn": IQN, "portals": [PORTAL], "preferred_node": BOXES[0],
        "failback": "manual", "initiators": [initiator_iqn],
        "auth": {"mode": "chap", "user": "hv", "secret": HV_SECRET},
        "luns": [{"lun": 0, "volume": NAME}]}]
    return data


def without_bench(data: dict[str, Any]) -> dict[str, Any]:
    """``data`` without a bench volume or target an interrupted run left in it."""
    return dict(data, volumes=[v for v in data.get("volumes", []) if v.get("name") != NAME],
                targets=[t for t in data.get("targets", []) if t.get("name") != NAME])


def bench(lab: Lab, options: ThroughputOptions, progress: Progress) -> dict[str, Any]:
    lab.require_running()
    return _Bench(lab, options, progress).run()


class _Bench:
    def __init__(self, lab: Lab, options: ThroughputOptions, progress: Progress) -> None:
        self.lab = lab
        self.o = options
        self.progress = progress
        self.primary = BOXES[0]
        self.found: dict[str, Any] | None = None
        self.initiator: Initiator | None = None
        self.lun: str | None = None
        self.failures: list[str] = []

    def run(self) -> dict[str, Any]:
        started = time.monotonic()
        report: dict[str, Any] = {"label": self.o.label, "options": asdict(self.o) | {
            "settings": as_dict(self.o.settings), "region_mib": self.o.region_mib}}
        runs: list[dict[str, dict[str, dict[str, Any]]]] = []
        aborted = None
        self.initiator = Initiator(self.lab)
        self.preflight()  # refused before anything changed: the CLI's error, not "aborted"
        try:
            report["lab"] = self.facts()
            self.setup()
            report["in_force"] = self.in_force()
            for n in range(1, self.o.runs + 1):
                runs.append(self.one_run(n))
            report["in_force_after"] = self.in_force()
            summary = summarize(runs)
            report["summary"] = summary
            if self.o.resync:
                report["resync"] = self.resync(summary)
        except (Exception, KeyboardInterrupt) as exc:  # Ctrl-C too: what was measured is kept
            aborted = f"{type(exc).__name__}: {exc}"
            self.progress(f"throughput-bench: aborted: {aborted}")
        finally:
            self.cleanup()
        summary = report.get("summary") or summarize(runs)
        return report | {"summary": summary, "goals": goals(summary, report.get("resync")),
                         "runs": runs, "failures": self.failures, "aborted": aborted,
                         "minutes": round((time.monotonic() - started) / 60, 1)}

    # -- before -----------------------------------------------------------------------

    def preflight(self) -> None:
        """Refuse before changing anything: fio on every node that runs it, room in the
        data volume group for the bench volume (both boxes) and the scratch LV."""
        assert self.initiator is not None
        problems = []
        for node in (*BOXES, self.initiator.name):
            if not self.lab.exec(node, ["sh", "-c", "command -v fio"]).ok:
                problems.append(Report(
                    "fio-missing", f"{node}: fio", "not installed", "fio on both boxes (image/"
                    "lab-packages; rebuild the lab image with image/build) and the initiator"))
        need = 2 * self.o.size_mib + META_MIB
        for box in BOXES:
            free = self.box(box, ["vgs", "--noheadings", "--units", "m", "--nosuffix",
                                  "-o", "vg_free", "data"]).out.strip()
            if _mib(free) < need:
                problems.append(Report("no-room", f"{box}: volume group data free MiB", free,
                                       f"at least {need} (bench volume and scratch LV); "
                                       "a smaller --size-mib"))
        if problems:
            raise IscsihaError(problems)

    def facts(self) -> dict[str, Any]:
        query = ("uname -r; dpkg-query -W -f '${Package}=${Version}\\n' fio drbd-utils "
                 "python3-rtslib-fb 2>/dev/null; true")
        lines = (ask(self.lab, BOXES[0], ["sh", "-c", query]) or "").splitlines()
        return {"date": datetime.now(UTC).isoformat(timespec="seconds"),
                "kernel": lines[0] if lines else None,
                "drbd_module": (ask(self.lab, BOXES[0], ["head", "-1", "/proc/drbd"])
                                or "").strip(),
                "packages": dict(line.split("=", 1) for line in lines[1:] if "=" in line),
                "initiator_fio": (ask(self.lab, self.initiator_name(), ["fio", "--version"])
                                  or "").strip(),
                "base_initiator_settings": INITIATOR_SETTINGS}

    def setup(self) -> None:
        assert self.initiator is not None
        text = ask(self.lab, BOXES[0], ["cat", DESIRED_PATH], timeout=60)
        try:
            found = tomllib.loads(text) if text else None
        except tomllib.TOMLDecodeError as exc:
            raise CheckFailed(f"{BOXES[0]}: {DESIRED_PATH} is not TOML: {exc}") from exc
        if not isinstance(found, dict):
            raise CheckFailed(f"no desired state in {DESIRED_PATH} on {BOXES[0]}")
        self.found = without_bench(found)
        if any(v.get("name") == SCRATCH for v in self.found.get("volumes", [])):
            raise CheckFailed(f"a volume is named {SCRATCH}, the bench's scratch LV: "
                              "the bench would delete it")
        for box in BOXES:  # a scratch LV an interrupted run left: converge would adopt it
            self.lab.exec(box, ["lvremove", "-q", "-y", f"data/{SCRATCH}"])
        self.progress(f"throughput-bench: adding volume and target {NAME} ({self.o.size_mib} "
                      "MiB) to the desired state")
        converge(self.lab, bench_desired(self.found, self.initiator.iqn, self.o.size_mib))
        self.wait(f"{NAME} served, its volume UpToDate on both boxes", self.ready, SETTLE)
        for box in BOXES:
            for command in drbd_commands(self.o.settings, NAME):
                self.box(box, command)
        for name, value in self.o.settings.iscsi.items():
            self.box(self.primary, ["sh", "-c", 'printf "%s" "$2" > "$1"', "-",
                                    f"{tpg_dir(IQN)}/{name}", str(value)])
        self.box(self.primary, ["lvcreate", "-q", "-y", "-L", f"{self.o.size_mib}M",
                                "-n", SCRATCH, "data"])
        self.lun = self.login()

    def ready(self) -> tuple[bool, str]:
        where = target_on(self.lab, NAME)
        if where is None:
            return False, f"target {NAME} not running"
        self.primary = where
        states = {box: (ask(self.lab, box, ["sh", "-c", f"drbdadm cstate {VOLUME}; drbdadm "
                                                        f"dstate {VOLUME}"]) or "").split()
                  for box in BOXES}
        ok = all(s == ["Connected", "UpToDate/UpToDate"] for s in states.values())
        return ok, f"served on {where}; DRBD {states}"

    def login(self) -> str:
        ini = self.initiator
        assert ini is not None
        ini.configure(IQN, PORTAL, secret=HV_SECRET, mutual=False)
        chosen = {**INITIATOR_SETTINGS, **{k: str(v) for k, v in
                                           self.o.settings.initiator.items()}}
        for key, value in chosen.items():
            ini.run(*ini.node(IQN, PORTAL), "-o", "update", "-n", key, "-v", value)
        return ini.login(IQN, PORTAL, 1)[0]

    def in_force(self) -> dict[str, Any]:
        """What the boxes and the initiator say is in force (not what was asked)."""
        ini = self.initiator
        assert ini is not None and self.lun is not None
        out: dict[str, Any] = {"primary": self.primary, "lun": self.lun}
        show = "drbdsetup show --show-defaults {0} 2>/dev/null || drbdsetup show {0}"
        out["drbd"] = {box: drbd_shown(ask(self.lab, box, ["sh", "-c", show.format(NAME)])
                                       or "", self.o.settings.drbd) for box in BOXES}
        out["lio_tpg"] = {name: (ask(self.lab, self.primary, ["cat", f"{tpg_dir(IQN)}/{name}"])
                                 or "").strip() or None for name in self.o.settings.iscsi}
        out["negotiated"] = negotiated(ini.try_run("iscsiadm", "-m", "session", "-P", "2").out,
                                       IQN)
        disk = self.lun.removeprefix("/dev/")
        out["initiator_queue_depth"] = ini.try_run(
            "cat", f"/sys/block/{disk}/device/queue_depth").out.strip() or None
        return out

    # -- measuring --------------------------------------------------------------------

    def one_run(self, n: int) -> dict[str, dict[str, dict[str, Any]]]:
        devices = {"lv": (self.primary, f"/dev/data/{SCRATCH}"),
                   "drbd": (self.primary, self.box(self.primary, [
                       "drbdadm", "sh-dev", VOLUME]).out.strip()),
                   "lun": (self.initiator_name(), self.lun or "")}
        run: dict[str, dict[str, dict[str, Any]]] = {}
        for place in PLACES:
            node, device = devices[place]
            for test in TESTS:
                label = f"run {n}/{self.o.runs}: {place} {test.name}"
                try:
                    figures = self.fio(node, test, device)
                except FioFailed as exc:
                    self.failures.append(f"{label} on {node} {device}: {exc}")
                    self.progress(f"throughput-bench: {label}: FAILED: {exc}")
                    continue
                run.setdefault(place, {})[test.name] = figures
                self.progress(f"throughput-bench: {label}: {headline(test, figures)} "
                              f"{test.unit}, mean {figures['lat_mean_us']} us")
        return run

    def fio(self, node: str, test: FioTest, device: str, fill_mib: int | None = None
            ) -> dict[str, Any]:
        argv = fio_argv(test, device, self.o.runtime_s, self.o.region_mib, fill_mib)
        bound = 120.0 + (self.o.runtime_s if fill_mib is None else 600.0)
        try:
            result = self.lab.exec(node, argv, timeout=bound)
        except IscsihaError as exc:  # the node did not answer in time
            raise FioFailed(str(exc)) from exc
        if not result.ok:
            raise FioFailed(f"exit {result.returncode}: "
                            f"{(result.err.strip() or result.out.strip())[-300:]}")
        return parse_fio(result.out, test)

    def resync(self, summary: dict[str, Any]) -> dict[str, Any]:
        """The Secondary disconnects, ``fill_mib`` MiB are written through the LUN, it
        reconnects; the LUN's sequential write and read measured during the resync."""
        secondary, lun = other(self.primary), self.lun or ""
        before_kib = sum(resync_kib(self.lab, self.primary).values())
        self.progress(f"throughput-bench: resync: {secondary} disconnects {NAME}")
        self.box(secondary, ["drbdadm", "disconnect", NAME])
        out: dict[str, Any] = {"secondary": secondary, "fill_mib": self.o.fill_mib}
        try:
            self.wait(f"{self.primary} without its peer", lambda: self.cstate_is(
                ("WFConnection", "StandAlone")), 60)
            out["fill"] = self.fio(self.initiator_name(), TEST_NAMES["seq-write-1m"], lun,
                                   self.o.fill_mib)
        finally:
            connected_at = time.monotonic()
            self.box(secondary, ["drbdadm", "connect", NAME])
        watch = _SyncWatch(self, connected_at)
        watch.start()
        during: dict[str, Any] = {}
        spans: dict[str, tuple[float, float]] = {}
        for name in ("seq-write-1m", "seq-read-1m"):
            test = TEST_NAMES[name]
            start = time.monotonic() - connected_at
            try:
                figures = self.fio(self.initiator_name(), test, lun)
            except FioFailed as exc:
                self.failures.append(f"resync: lun {name}: {exc}")
                continue
            spans[name] = (start, time.monotonic() - connected_at)
            normal = summary[name]["lun"][test.unit]["median"]
            during[name] = figures | {"of_normal": ratio(headline(test, figures), normal),
                                      "normal": normal}
            self.progress(f"throughput-bench: resync: {name} {headline(test, figures)} "
                          f"{test.unit} ({during[name]['of_normal']} of normal)")
        watch.join(self.o.resync_timeout_s)
        for name, (start, end) in spans.items():
            # Below 1 the figure is partly of a pair already in sync: read it with that.
            during[name]["share_during_resync"] = overlap(start, end, 0.0, watch.done_s)
        self.wait("no DRBD fence constraint left", lambda: (
            not fence_constraints(self.lab, self.primary), "constraints left"), 120)
        return out | {"during": during, "resync_s": watch.done_s,
                      "saw_sync_source": watch.saw_sync,
                      "resynced_kib": sum(resync_kib(self.lab, self.primary).values()) - before_kib}

    def cstate_is(self, states: tuple[str, ...]) -> tuple[bool, str]:
        seen = (ask(self.lab, self.primary, ["drbdadm", "cstate", VOLUME]) or "").strip()
        return seen in states, f"cstate {seen}"

    # -- after ------------------------------------------------------------------------

    def cleanup(self) -> None:
        """Log out, reconnect a resource left disconnected, drop the scratch LV, apply
        the desired state found. What fails here is reported, not raised."""
        steps: list[tuple[str, Callable[[], object]]] = []
        if (ini := self.initiator) is not None:
            steps.append(("logout", lambda: ini.try_run(
                "sh", "-c", f"iscsiadm -m node -T {IQN} -p {PORTAL} --logout; "
                            f"iscsiadm -m node -T {IQN} -p {PORTAL} -o delete")))
        for box in BOXES:
            steps.append((f"{box}: connect", partial(self.lab.exec, box, [
                "sh", "-c", f"drbdadm cstate {VOLUME} | grep -q StandAlone && drbdadm "
                            f"connect {NAME}; true"])))
            steps.append((f"{box}: lvremove", partial(self.lab.exec, box, [
                "lvremove", "-q", "-y", f"data/{SCRATCH}"])))
        if (found := self.found) is not None:
            self.progress("throughput-bench: applying the desired state found (deletes "
                          f"{NAME})")
            steps.append(("apply", lambda: converge(self.lab, found)))
        for what, step in steps:
            try:
                step()
            except (IscsihaError, AssertionError) as exc:
                self.failures.append(f"cleanup: {what}: {exc}")
                self.progress(f"throughput-bench: cleanup: {what}: {exc}")

    # -- helpers ----------------------------------------------------------------------

    def initiator_name(self) -> str:
        assert self.initiator is not None
        return self.initiator.name

    def box(self, node: str, argv: list[str], timeout: float = 120) -> GuestResult:
        return self.lab.exec(node, argv, timeout=timeout).check()

    def wait(self, what: str, check: Callable[[], tuple[bool, str]], timeout: float) -> None:
        wait_until(what, check, timeout,
                   lambda line: self.progress(f"throughput-bench: {line}"))


def _mib(text: str) -> float:
    """vgs' figure in MiB; 0 for anything that is not one (then the check refuses)."""
    try:
        return float(text)
    except ValueError:
        return 0.0


class _SyncWatch(threading.Thread):
    """Polls the Primary once a second from the reconnect until the resource is
    Connected and UpToDate on both sides: the resync's duration."""

    def __init__(self, bench: _Bench, since: float) -> None:
        super().__init__(daemon=True)
        self.bench, self.since = bench, since
        self.done_s: float | None = None
        self.saw_sync = False

    def run(self) -> None:
        deadline = self.since + self.bench.o.resync_timeout_s
        while time.monotonic() < deadline:
            seen = (ask(self.bench.lab, self.bench.primary, ["sh", "-c", f"drbdadm cstate "
                        f"{VOLUME}; drbdadm dstate {VOLUME}"]) or "").split()
            self.saw_sync |= bool(seen) and seen[0].startswith("Sync")
            if seen == ["Connected", "UpToDate/UpToDate"]:
                self.done_s = round(time.monotonic() - self.since, 1)
                return
            time.sleep(1)
