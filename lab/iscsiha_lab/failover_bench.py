"""`iscsiha-lab failover-bench`: the I/O pause of a planned move and of a power cut, per
LUN count, with our agents and with the stock ClusterLabs agents, in one lab run.

Run by hand on a lab that is up (the defaults take hours); it takes the lab over. What
it does and compares: docs/failover.md, "Benchmark". Every wait is bounded; a pair that
does not recover ends the benchmark with what it measured so far ("aborted").
"""

from __future__ import annotations

import re
import statistics
import time
import xml.etree.ElementTree as ET
from collections.abc import Callable, Mapping, Sequence
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from ipaddress import IPv4Address
from typing import Any

from iscsiha.errors import IscsihaError, Report
from iscsiha.model.identity import volume_slots
from iscsiha.plan.cib import previous_drbd, to_text
from iscsiha_lab import stock_cib, timeline
from iscsiha_lab.desired import cluster_data
from iscsiha_lab.faults import Load
from iscsiha_lab.guest import GuestResult
from iscsiha_lab.initiator import HV_SECRET, Initiator, iqn
from iscsiha_lab.lab import Lab
from iscsiha_lab.pair import (
    BOXES,
    INITIATOR_SETTINGS,
    RECOVERY,
    CheckFailed,
    ask,
    converge,
    fence_constraints,
    logout_all,
    other,
)
from iscsiha_lab.topology import NetworkRole, Topology

Progress = Callable[[str], None]
FAULTS = ("move", "power-cut")
AGENT_SETS = ("ours", "stock")
# The model's smallest volume (VOLUME_SIZE_MIN); the lab's 2 GiB data disk holds
# about 120 of them, so 100 LUNs is the most a run may ask for.
VOLUME_SIZE = "16M"
MAX_LUNS = 100
TARGET = "bench"
IQN = iqn(TARGET)
# On the storage network, apart from the failover tests' and the demo's portals.
PORTAL = IPv4Address("10.99.30.120")
PREFERRED = BOXES[0]
# Both sets authenticate alike: one-way CHAP (iSCSITarget has no mutual CHAP) and an
# ACL for the lab's initiator.
CHAP_USER = "hv"
OURS_GROUP = f"target-{TARGET}"  # iscsiha.plan.cib.target_group_id (a unit test checks)
STOCK_GROUP = f"stock-{TARGET}"
GROUPS = {"ours": OURS_GROUP, "stock": STOCK_GROUP}
MIN_WRITES = 100  # fewer and the verifier did not really run
SETTLE = 300.0  # the time the cluster gets for any one change, plus per LUN:
PER_LUN = 10.0  # the stock agents run targetcli two or three times per LUN


@dataclass(frozen=True)
class BenchOptions:
    luns: tuple[int, ...]
    runs: int
    faults: tuple[str, ...]
    agents: tuple[str, ...]


def parse_options(luns: str, runs: int, faults: str, agents: str) -> BenchOptions:
    """The command line's lists, or every problem in them at once."""
    problems: list[Report] = []
    counts = lun_counts(luns, problems)
    if runs < 1:
        problems.append(Report("bad-run-count", "--runs", runs, "a count of 1 or more"))
    chosen = {}
    for option, text, allowed in (("--faults", faults, FAULTS), ("--agents", agents, AGENT_SETS)):
        words = _words(text, option, problems)
        problems += [Report(f"unknown-{option[2:-1]}", option, w, ", ".join(allowed))
                     for w in words if w not in allowed]
        chosen[option] = tuple(w for w in words if w in allowed)
    if problems:
        raise IscsihaError(problems)
    return BenchOptions(tuple(counts), runs, chosen["--faults"], chosen["--agents"])


def lun_counts(text: str, problems: list[Report]) -> list[int]:
    """The LUN counts of ``--luns``; what is wrong with them goes to ``problems``."""
    counts = []
    for word in _words(text, "--luns", problems):
        if word.isdigit() and 1 <= int(word) <= MAX_LUNS:
            counts.append(int(word))
        else:
            problems.append(Report("bad-lun-count", "--luns", word, f"LUN counts from 1 to "
                                   f"{MAX_LUNS}, comma-separated (the data disk's limit)"))
    return counts


def _words(text: str, option: str, problems: list[Report]) -> list[str]:
    words = [w.strip() for w in text.split(",")]
    if not all(words):
        problems.append(Report("empty-list-entry", option, text,
                               "a comma-separated list without empty entries"))
    words = [w for w in words if w]
    for w in sorted({w for w in words if words.count(w) > 1}):
        problems.append(Report("duplicate-list-entry", option, w, "each entry once"))
    return list(dict.fromkeys(words))


def failover_timeout(luns: int) -> float:
    return SETTLE + PER_LUN * luns


def recovery_timeout(luns: int) -> float:
    """A powered-on box boots, rejoins, starts and resyncs every volume within this."""
    return RECOVERY + 5.0 * luns


# -- what the boxes say, parsed (pure) ---------------------------------------------------

@dataclass(frozen=True)
class DrbdMinor:
    connection: str
    role: str  # this box's
    disks: str  # this box's / the peer's


_PROC_DRBD = re.compile(r"^\s*(\d+): cs:(\S+) ro:([^/\s]+)/\S+ ds:(\S+)", re.MULTILINE)


def parse_proc_drbd(text: str) -> dict[int, DrbdMinor]:
    """/proc/drbd of the 8.4 module: minor -> state; unconfigured minors are left out."""
    return {int(m[1]): DrbdMinor(m[2], m[3], m[4]) for m in _PROC_DRBD.finditer(text)}


def drbd_problems(views: Mapping[str, Mapping[int, DrbdMinor]], volumes: int) -> list[str]:
    """What keeps the volumes from being healthy: every box with exactly ``volumes``
    devices, each Connected and UpToDate on both, Primary on exactly one box."""
    problems = [f"{box}: {len(view)} DRBD devices, expected {volumes}"
                for box, view in views.items() if len(view) != volumes]
    for minor in sorted(set.intersection(*(set(v) for v in views.values())) if views else ()):
        states = {box: view[minor] for box, view in views.items()}
        problems += [f"{box}: drbd{minor} {s.connection} {s.disks}" for box, s in states.items()
                     if s.connection != "Connected" or s.disks != "UpToDate/UpToDate"]
        roles = sorted(s.role for s in states.values())
        if roles != ["Primary", "Secondary"]:
            problems.append(f"drbd{minor}: roles {', '.join(roles)}")
    return problems


def _mon(xml: str | None) -> ET.Element | None:
    try:
        return ET.fromstring(xml) if xml else None
    except ET.ParseError:
        return None


def online_nodes(crm_mon_xml: str | None) -> set[str]:
    mon = _mon(crm_mon_xml)
    return set() if mon is None else {n.get("name", "") for n in mon.iter("node")
                                      if n.get("online") == "true"}


def group_where(crm_mon_xml: str | None, group: str) -> str | None:
    """The box where every member of ``group`` runs (started, not failed), else None."""
    mon = _mon(crm_mon_xml)
    for el in mon.iter("group") if mon is not None else ():
        if el.get("id") != group:
            continue
        members = el.findall("resource")
        nodes = [[n.get("name") for n in r.findall("node")] for r in members]
        if members and all(r.get("role") == "Started" and r.get("failed") != "true"
                           for r in members) and all(len(n) == 1 for n in nodes):
            where = {n[0] for n in nodes}
            if len(where) == 1:
                return where.pop()
    return None


def group_active(crm_mon_xml: str | None, group: str) -> bool:
    """Any member of ``group`` still active anywhere. Once the group is out of the CIB,
    crm_mon lists its members as orphans, outside any group: those are known by the
    <group>-<member> ids both sets use."""
    mon = _mon(crm_mon_xml)
    if mon is None:
        return False
    members = [r for g in mon.iter("group") if g.get("id") == group for r in g.iter("resource")]
    members += [r for r in mon.iter("resource") if r.get("orphaned") == "true"
                and r.get("id", "").startswith(group + "-")]
    return any(r.get("active") == "true" for r in members)


# -- results (pure) ----------------------------------------------------------------------

def run_failure(result: Mapping[str, Any], error: str | None) -> str | None:
    """Why a run counts as failed, or None: the fault did not complete, or the verifier
    saw I/O errors, lost or unreadable writes, or hardly ran."""
    if error:
        return error
    if not result:
        return "the verifier returned nothing"
    bad = {k: result.get(k, 0) for k in ("errors", "lost", "unreadable")}
    if any(bad.values()):
        return (f"{bad['errors']} I/O errors, {bad['lost']} acknowledged writes lost, "
                f"{bad['unreadable']} unreadable: {'; '.join(result.get('error_text', [])[:3])}")
    if result.get("writes", 0) <= MIN_WRITES:
        return f"only {result.get('writes', 0)} writes completed"
    return None


def summarize(runs: Sequence[Mapping[str, Any]]) -> dict[str, Any]:
    """Median and spread of the pauses of the runs that did not fail."""
    pauses = [float(r["max_gap_s"]) for r in runs if r.get("failure") is None]
    figures: dict[str, Any] = {"ok_runs": len(pauses), "failed_runs": len(runs) - len(pauses),
                               "pauses_s": pauses}
    if not pauses:
        return figures | dict.fromkeys(("median_s", "min_s", "max_s", "spread_s"))
    low, high = min(pauses), max(pauses)
    return figures | {"median_s": round(statistics.median(pauses), 3), "min_s": low,
                      "max_s": high, "spread_s": round(high - low, 3)}


def ratios(results: Sequence[Mapping[str, Any]]) -> list[dict[str, Any]]:
    """Per LUN count and fault measured for both sets: stock median / ours."""
    medians = {(r["agents"], r["luns"], r["fault"]): r["median_s"] for r in results}
    out = []
    for (agents, luns, fault), ours in medians.items():
        if agents != "ours" or ("stock", luns, fault) not in medians:
            continue
        stock = medians[("stock", luns, fault)]
        entry: dict[str, Any] = {"luns": luns, "fault": fault, "ours_median_s": ours,
                                 "stock_median_s": stock, "stock_over_ours": None}
        if ours is None or stock is None:
            entry["note"] = "no run without failure for " + " and ".join(
                name for name, m in (("ours", ours), ("stock", stock)) if m is None)
        elif ours == 0:
            entry["note"] = "ours paused 0 s"
        else:
            entry["stock_over_ours"] = round(stock / ours, 2)
        out.append(entry)
    return out


def bench_desired(cluster: dict[str, Any], initiator_iqn: str, luns: int) -> dict[str, Any]:
    """The lab's desired state (``cluster``: what `cluster init` wrote) with volumes
    bench0.. and our target exporting them all. The stock agents' run keeps it (its DRBD
    resource holds the volumes) with our group stopped."""
    data = dict(cluster)
    volumes = [f"{TARGET}{i}" for i in range(luns)]
    data["volumes"] = [{"name": v, "size": VOLUME_SIZE} for v in volumes]
    data["targets"] = [{
        "name": TARGET, "iqn": IQN, "portals": [str(PORTAL)], "preferred_node": PREFERRED,
        "failback": "manual", "initiators": [initiator_iqn],
        "auth": {"mode": "chap", "user": CHAP_USER, "secret": HV_SECRET},
        "luns": [{"lun": i, "volume": v} for i, v in enumerate(volumes)]}]
    return data


def stock_target(topology: Topology, initiator_iqn: str,
                 devices: Sequence[str]) -> stock_cib.StockTarget:
    """The stock group for the same volumes, portal, initiator and CHAP as ours."""
    storage = topology.network_with(NetworkRole.STORAGE)[0]
    box = topology.node(PREFERRED)
    nic = next(i.ifname for i in topology.interfaces(box) if i.network == storage)
    return stock_cib.StockTarget(
        group=STOCK_GROUP, drbd=TARGET, iqn=IQN, address=PORTAL, prefixlen=storage.subnet.prefixlen,
        nic=nic, initiator=initiator_iqn, chap_user=CHAP_USER,
        chap_secret=HV_SECRET, preferred_node=PREFERRED,
        luns=tuple(stock_cib.StockLun(i, f"{TARGET}{i}", dev) for i, dev in enumerate(devices)))


# -- the benchmark on the lab ------------------------------------------------------------

def bench(lab: Lab, options: BenchOptions, progress: Progress) -> dict[str, Any]:
    """Every (LUN count, agents, fault, run) of ``options``; the report."""
    lab.require_running()
    (runner := _Bench(lab, options, progress)).preflight()
    return runner.run()


class _Bench:
    def __init__(self, lab: Lab, options: BenchOptions, progress: Progress) -> None:
        self.lab = lab
        self.options = options
        self.progress = progress
        self.initiator: Initiator | None = None

    # -- whole run -------------------------------------------------------------------

    def preflight(self) -> None:
        """Refuse before changing anything when the stock agents cannot run."""
        if "stock" not in self.options.agents:
            return
        needed = ["targetcli", *(f"/usr/lib/ocf/resource.d/heartbeat/{a}"
                                 for a in ("IPaddr2", "iSCSITarget", "iSCSILogicalUnit"))]
        script = "; ".join(f"command -v {n} >/dev/null || echo {n}" for n in needed)
        problems = [Report("stock-agents-missing", f"{box}: commands", ", ".join(missing),
                           "targetcli (Debian targetcli-fb in the image) and resource-agents' "
                           "IPaddr2, iSCSITarget, iSCSILogicalUnit on both boxes; or --agents "
                           "ours") for box in BOXES
                    if (missing := self.lab.exec(box, ["sh", "-c", script]).check().out.split())]
        if problems:
            raise IscsihaError(problems)

    def run(self) -> dict[str, Any]:
        started = time.monotonic()
        report: dict[str, Any] = {
            "lab": self.facts(),
            "compared": {
                "ours": "ocf:iscsiha:address + ocf:iscsiha:target: one target, N LUNs",
                "stock": "ocf:heartbeat:IPaddr2 + ocf:heartbeat:iSCSITarget + N x ocf:"
                         "heartbeat:iSCSILogicalUnit, implementation=lio-t, block backstores",
                "portblock": stock_cib.PORTBLOCK,
                "portal": "both reached at the floating address; stock's lio-t listens on "
                          "0.0.0.0:3260 (a floating-address portal failed in targetcli)",
                "auth": "one-way CHAP and an ACL for the lab's initiator, on both",
                "volumes": f"bench0..bench<N-1>, {VOLUME_SIZE} each: the volumes of one DRBD "
                           "resource with one promotable clone, the same for both (for the "
                           "stock run our group is stopped)",
                "pause": "longest gap between two acknowledged 4 KiB O_DIRECT|O_DSYNC writes, "
                         "round-robin over all N disks",
                "failed_run": "I/O errors, lost or unreadable writes, or an unfinished fault: "
                              "listed, left out of the statistics"},
            "options": asdict(self.options),
        }
        runs: dict[tuple[str, int, str], list[dict[str, Any]]] = {}  # (agents, LUNs, fault)
        aborted = None
        try:
            self.initiator = Initiator(self.lab)
            logout_all(self.initiator)
            self.remove_stock()  # one an interrupted run left behind
            for luns in self.options.luns:
                for agents in self.options.agents:
                    self.setup(agents, luns)
                    for fault in self.options.faults:
                        for n in range(1, self.options.runs + 1):
                            runs.setdefault((agents, luns, fault), []).append(
                                self.one_run(agents, luns, fault, n))
                    if agents == "stock":
                        self.remove_stock()
        except (Exception, KeyboardInterrupt) as exc:  # Ctrl-C too: what was measured is kept
            aborted = "; ".join([f"{type(exc).__name__}: {exc}",
                                 *getattr(exc, "__notes__", [])])
            self.progress(f"failover-bench: aborted: {aborted}")
        finally:
            self.cleanup()
        results = [{"agents": a, "luns": n, "fault": f, "runs": r, **summarize(r)}
                   for (a, n, f), r in runs.items()]
        return report | {"results": results, "ratios": ratios(results), "aborted": aborted,
                         "minutes": round((time.monotonic() - started) / 60, 1)}

    def facts(self) -> dict[str, Any]:
        lines = (ask(self.lab, BOXES[0], ["sh", "-c", "uname -r; dpkg-query -W -f '${Package}="
                                          "${Version}\\n' pacemaker resource-agents drbd-utils "
                                          "python3-rtslib-fb targetcli-fb 2>/dev/null; true"])
                 or "").splitlines()
        return {"date": datetime.now(UTC).isoformat(timespec="seconds"),
                "kernel": lines[0] if lines else None,
                "packages": dict(line.split("=", 1) for line in lines[1:] if "=" in line),
                "volume_size": VOLUME_SIZE, "initiator_settings": INITIATOR_SETTINGS}

    def cleanup(self) -> None:  # what fails here is only reported
        steps: list[Callable[[], None]] = [self.remove_stock]
        if (initiator := self.initiator) is not None:
            steps.insert(0, lambda: logout_all(initiator))
        for step in steps:
            try:
                step()
            except (IscsihaError, AssertionError) as exc:
                self.progress(f"failover-bench: cleanup: {exc}")

    # -- per LUN count and agent set -------------------------------------------------

    def setup(self, agents: str, luns: int) -> None:
        self.progress(f"failover-bench: {luns} LUNs, {agents} agents: converging")
        assert self.initiator is not None
        data = bench_desired(cluster_data(self.lab), self.initiator.iqn, luns)
        converge(self.lab, data, box=self.up_box())
        # Both sets serve the volumes of our target's DRBD resource; for the stock
        # run our group stays stopped (one LIO target per IQN).
        self.set_role(OURS_GROUP, "Started" if agents == "ours" else "Stopped")
        if agents == "stock":
            self.wait(f"{OURS_GROUP} stopped", lambda: self.stopped(OURS_GROUP),
                      failover_timeout(luns))
            self.wait_healthy(luns, None, failover_timeout(luns))
            self.add_stock(luns)
        self.wait_healthy(luns, GROUPS[agents], failover_timeout(luns))

    def add_stock(self, luns: int) -> None:
        """The stock group, stopped, then its constraints, then started: three CIB
        updates, so nothing is placed before its constraints exist."""
        assert self.initiator is not None
        slots = volume_slots(previous_drbd(self.box(["cibadmin", "--query"]).out))
        volumes = [f"{TARGET}{i}" for i in range(luns)]
        if missing := [v for v in volumes if v not in slots]:
            raise CheckFailed(f"no DRBD device in the CIB for {', '.join(missing)}")
        target = stock_target(self.lab.topology, self.initiator.iqn,
                              [slots[v].device for v in volumes])
        self.progress(f"failover-bench: adding the stock group ({luns} LUNs)")
        self.box(["cibadmin", "--create", "--scope", "resources", "--xml-pipe"],
                 input=to_text(stock_cib.resources(target, started=False)))
        self.box(["cibadmin", "--create", "--scope", "constraints", "--xml-pipe"],
                 input=to_text(stock_cib.constraints(target)))
        self.set_role(STOCK_GROUP, "Started")

    def remove_stock(self) -> None:
        cib = self.box(["cibadmin", "--query"]).out
        if not stock_cib.present(cib, STOCK_GROUP):
            return
        self.progress("failover-bench: stopping and removing the stock group")
        self.set_role(STOCK_GROUP, "Stopped")
        # An apply would drop it too, but then nothing orders its LUNs' stop before
        # DRBD's demote; so it goes only once it has stopped.
        self.wait("the stock group stopped", lambda: self.stopped(STOCK_GROUP),
                  failover_timeout(MAX_LUNS))
        constraints, resources = stock_cib.removal(cib, STOCK_GROUP)
        self.box(["cibadmin", "--delete", "--scope", "constraints", "--xml-pipe"],
                 input=to_text(constraints))
        self.box(["cibadmin", "--delete", "--scope", "resources", "--xml-pipe"],
                 input=to_text(resources))

    def set_role(self, group: str, role: str) -> None:
        self.box(["crm_resource", "--resource", group, "--meta", "--set-parameter",
                  "target-role", "--parameter-value", role])

    def stopped(self, group: str) -> tuple[bool, str]:
        mon = ask(self.lab, self.up_box(), ["crm_mon", "-1", "--output-as=xml"])
        return mon is not None and not group_active(mon, group), "some members active"

    # -- one run ---------------------------------------------------------------------

    def one_run(self, agents: str, luns: int, fault: str, n: int) -> dict[str, Any]:
        assert self.initiator is not None
        gid = GROUPS[agents]
        label = f"{luns} LUNs, {agents}, {fault}, run {n}/{self.options.runs}"
        self.wait_healthy(luns, gid, recovery_timeout(luns))
        active = self.where(gid, BOXES)
        if active is None:
            raise CheckFailed(f"{gid} runs nowhere before {label}")
        self.progress(f"failover-bench: {label}: logging in, verifier on, fault on {active}")
        record: dict[str, Any] = {"run": n, "from": active, "to": other(active)}
        try:
            load = Load(self.initiator, self.login(luns))
        except (IscsihaError, AssertionError) as exc:  # nothing to measure; the next may
            logout_all(self.initiator)
            record["failure"] = f"login: {type(exc).__name__}: {exc}"
            self.progress(f"failover-bench: {label}: FAILED: {record['failure']}")
            self.recover(luns, gid, agents, failed=True)
            return record
        load.start()
        started, fault_at = time.monotonic(), time.time()
        error = None
        try:
            if fault == "move":
                self.move(agents, gid, other(active), luns)
            else:
                self.lab.power("power-off", active)
                self.wait(f"{gid} served from {other(active)}", lambda: self.serving(
                    gid, other(active)), failover_timeout(luns))
            record["served_after_s"] = round(time.monotonic() - started, 1)
        except (IscsihaError, AssertionError) as exc:
            error = f"{type(exc).__name__}: {exc}"
        result: dict[str, Any] = {}
        try:
            result = load.stop()
        except AssertionError as exc:
            error = error or str(exc)
        finally:
            logout_all(self.initiator)
        keep = ("max_gap_s", "gap_at_s", "writes", "errors", "lost", "lost_kinds",
                "newer_than_acked", "unreadable", "checked", "error_text")
        record |= {k: result.get(k) for k in keep}
        record["timeline"] = timeline.rows(self.lab, fault_at, result)
        record["failure"] = run_failure(result, error)
        if fault == "move" and record["failure"] is None and (off := self.powered_off()):
            record["failure"] = f"fenced during a planned move: {', '.join(off)}"
        self.progress(f"failover-bench: {label}: pause {record['max_gap_s']} s, "
                      + (f"FAILED: {record['failure']}" if record["failure"] else "ok"))
        self.recover(luns, gid, agents, failed=record["failure"] is not None)
        return record

    def move(self, agents: str, gid: str, dest: str, luns: int) -> None:
        """The same steps for both sets: a cli-prefer constraint, wait for the cluster
        to settle, clear the constraint (iscsiha.commands.targets.move does exactly this)."""
        bound = failover_timeout(luns)
        if agents == "ours":
            moved = self.lab.exec(self.up_box(), ["iscsiha", "target", "move", TARGET, dest,
                                                  "--timeout", f"{bound:.0f}"],
                                  timeout=bound + 60)
        else:
            self.box(["crm_resource", "--move", "--resource", gid, "--node", dest])
            try:
                moved = self.lab.exec(self.up_box(), ["crm_resource", "--wait",
                                                      f"--timeout={bound:.0f}s"],
                                      timeout=bound + 60)
            finally:
                self.box(["crm_resource", "--clear", "--resource", gid])
        if not moved.ok:
            raise CheckFailed(f"{' '.join(moved.argv)}: {(moved.err or moved.out).strip()}")
        self.wait(f"{gid} on {dest}", lambda: self.serving(gid, dest), 60)

    def recover(self, luns: int, gid: str, agents: str, failed: bool) -> None:
        """Power on what the fault (or a failed move) left off and wait for the pair to
        be healthy; after a failed run also drop a move's constraint and forget failures.
        Raises when the pair is not healthy within the bound."""
        for box in self.powered_off():
            self.progress(f"failover-bench: powering {box} on")
            self.lab.power("power-on", box)
        if failed:
            if agents == "stock":
                self.box(["crm_resource", "--clear", "--resource", gid], check=False)
            self.box(["crm_resource", "--cleanup", "--resource", gid], check=False)
        self.wait_healthy(luns, gid, recovery_timeout(luns))

    def login(self, luns: int) -> list[str]:
        """Log in to the bench target with the documented initiator settings; its N
        disks in LUN order, once every one of them is there."""
        ini = self.initiator
        assert ini is not None
        ini.configure(IQN, str(PORTAL), secret=HV_SECRET, mutual=False)
        for key, value in INITIATOR_SETTINGS.items():
            ini.run(*ini.node(IQN, str(PORTAL)), "-o", "update", "-n", key, "-v", value)
        ini.run(*ini.node(IQN, str(PORTAL)), "--login", timeout=60 + 2.0 * luns)
        disks: dict[int, str] = {}

        def complete() -> tuple[bool, str]:
            disks.clear()
            disks.update(ini.disks(IQN))
            if sorted(disks) != list(range(luns)):
                return False, f"{len(disks)} of {luns} disks"
            tests = " && ".join(f"test -b /dev/{d}" for d in disks.values())
            return ini.try_run("sh", "-c", tests).ok, "device nodes missing"

        self.wait(f"{luns} disks of {IQN}", complete, 60 + 2.0 * luns)
        return [f"/dev/{disks[i]}" for i in range(luns)]

    # -- the pair --------------------------------------------------------------------

    def where(self, gid: str, boxes: Sequence[str]) -> str | None:
        for box in boxes:
            mon = ask(self.lab, box, ["crm_mon", "-1", "--output-as=xml"])
            if mon is not None:
                return group_where(mon, gid)
        return None

    def serving(self, gid: str, box: str) -> tuple[bool, str]:
        where = self.where(gid, (box,))
        return where == box, f"{gid} runs on {where or 'no box'} (asked {box})"

    def healthy(self, luns: int, gid: str | None) -> tuple[bool, str]:
        """Both boxes online, the N volumes healthy, ``gid`` (if any) running, the other
        set's group not active, no DRBD fence constraint left."""
        mons = {box: ask(self.lab, box, ["crm_mon", "-1", "--output-as=xml"]) for box in BOXES}
        for box, mon in mons.items():
            if online_nodes(mon) != set(BOXES):
                return False, f"{box} sees online: {sorted(online_nodes(mon)) or 'nothing'}"
        views = {box: parse_proc_drbd(ask(self.lab, box, ["cat", "/proc/drbd"]) or "")
                 for box in BOXES}
        if problems := drbd_problems(views, luns):
            return False, "; ".join(problems[:3])
        mon = mons[BOXES[0]]
        if gid is not None and group_where(mon, gid) is None:
            return False, f"{gid} not running"
        if busy := [g for g in (OURS_GROUP, STOCK_GROUP) if g != gid and group_active(mon, g)]:
            return False, f"{', '.join(busy)} still active"
        if fences := fence_constraints(self.lab, BOXES[0]):
            return False, f"DRBD fence constraints left: {', '.join(fences)}"
        return True, "healthy"

    def wait_healthy(self, luns: int, gid: str | None, timeout: float) -> None:
        self.wait(f"the pair healthy with {luns} volumes" + (f" and {gid}" if gid else ""),
                  lambda: self.healthy(luns, gid), timeout)

    def powered_off(self) -> list[str]:
        nodes = self.lab.status().get("nodes", {})
        return [box for box in BOXES if nodes.get(box, {}).get("power") == "off"]

    def up_box(self) -> str:
        """The first box whose lab agent answers: after a power cut of san-a, san-b."""
        return next((b for b in BOXES if self.lab.channel(b).ready()), BOXES[0])

    def box(self, argv: list[str], input: str | None = None, check: bool = True) -> GuestResult:
        result = self.lab.exec(self.up_box(), argv, input=input, timeout=120)
        return result.check() if check else result

    def wait(self, what: str, check: Callable[[], tuple[bool, str]], timeout: float) -> None:
        wait_until(what, check, timeout, lambda line: self.progress(f"failover-bench: {line}"))


def wait_until(what: str, check: Callable[[], tuple[bool, str]], timeout: float,
               progress: Progress) -> None:
    """Until ``check`` says yes, at most ``timeout`` seconds (plus one check); what it
    sees goes to ``progress`` every minute, so a long wait is not a silent one."""
    started = time.monotonic()
    told = started
    while True:
        ok, seen = check()
        now = time.monotonic()
        if ok:
            return
        if now - started > timeout:
            raise CheckFailed(f"timed out after {timeout:.0f} s waiting for {what}: "
                              f"last seen: {seen}")
        if now - told >= 60:
            told = now
            progress(f"{now - started:.0f} s waiting for {what}: {seen}")
        time.sleep(2)
