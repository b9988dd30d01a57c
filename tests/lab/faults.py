"""Fault scenarios under load: the desired state they share, the verifier running on
the initiator, and the checks every scenario ends with."""

from __future__ import annotations

import json
import re
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

from iscsiha.errors import IscsihaError
from iscsiha.lab.lab import Lab
from tests.lab.storage import MUTUAL, Initiator, apply, iqn, iscsiha, wait_for

BOXES = ("san-a", "san-b")
# alpha fails back by hand, beta on its own: both policies under every fault.
TARGETS = {"alpha": ("10.99.30.110", "san-a", "manual"),
           "beta": ("10.99.30.111", "san-b", "auto")}
RECOVERY = 420.0  # a fenced box reboots, rejoins and resyncs within this


def failover_desired(lab: Lab, initiator_iqn: str) -> dict[str, Any]:
    from iscsiha.lab.desired import lab_data

    data = lab_data(lab.topology, lab.bmc_password())
    data["volumes"] = [{"name": name, "size": "32M"} for name in TARGETS]
    data["targets"] = [
        {"name": name, "iqn": iqn(name), "portals": [portal], "preferred_node": node,
         "failback": failback, "initiators": [initiator_iqn], "auth": MUTUAL,
         "luns": [{"lun": 0, "volume": name}]}
        for name, (portal, node, failback) in TARGETS.items()]
    return data


def converge(lab: Lab, data: dict[str, Any]) -> None:
    """Apply ``data``, deleting whatever volumes earlier tests left: targets first (a
    volume still exported is never deleted), then the volumes."""
    out = lab.exec("san-a", ["lvs", "--noheadings", "--units", "m", "--nosuffix",
                             "-o", "lv_name,lv_size", "data"]).check().out
    wanted = {v["name"] for v in data["volumes"]}
    extra = {name: f"{float(size):.0f}M" for name, size in
             (line.split() for line in out.splitlines() if line.strip()) if name not in wanted}
    if extra:
        keep = dict(data, volumes=[*data["volumes"],
                                   *({"name": n, "size": s} for n, s in extra.items())])
        result = apply(lab, keep)
        assert result.ok, result.out + result.err
    deletes = [arg for name in extra for arg in ("--delete", name)]
    result = apply(lab, data, *deletes)
    assert result.ok, result.out + result.err


def ask(lab: Lab, box: str, argv: list[str], timeout: float = 30) -> str | None:
    """A command's output, or None when the box is down, frozen or the command failed:
    during a fault one box may not answer."""
    try:
        result = lab.exec(box, argv, timeout=timeout)
    except IscsihaError:
        return None
    return result.out if result.ok else None


def target_on(lab: Lab, name: str) -> str | None:
    """Where the target runs, asked of whichever box answers."""
    for box in BOXES:
        out = ask(lab, box, ["iscsiha", "status"])
        if out is None:
            continue
        for line in out.splitlines():
            words = line.split()
            if words[:2] == ["target", name]:
                return None if "(not" in line or words[3] == "stopped" else words[3]
    return None


@dataclass
class DrbdView:
    role: str
    connection: str
    disks: str


def drbd(lab: Lab, box: str) -> dict[str, DrbdView]:
    script = "; ".join(f"echo {v} $(drbdadm role {v}) $(drbdadm cstate {v}) "
                       f"$(drbdadm dstate {v})" for v in TARGETS)
    views = {}
    for line in (ask(lab, box, ["sh", "-c", script]) or "").splitlines():
        words = line.split()
        if len(words) == 4:
            views[words[0]] = DrbdView(words[1].split("/")[0], words[2], words[3])
    return views


def online(lab: Lab) -> set[str]:
    """The boxes both boxes see online (a partitioned pair has no agreement)."""
    views = [ask(lab, box, ["crm_mon", "-1", "--output-as=xml"]) for box in BOXES]
    seen = [set(re.findall(r'<node name="([^"]+)"[^>]* online="true"', v or ""))
            for v in views]
    return seen[0] & seen[1]


def healthy(lab: Lab) -> bool:
    """Both boxes online, every volume connected and UpToDate on both, one Primary each,
    every target running."""
    if online(lab) != set(BOXES):
        return False
    views = [drbd(lab, box) for box in BOXES]
    for volume in TARGETS:
        pair = [v.get(volume) for v in views]
        if any(p is None or p.connection != "Connected" or p.disks != "UpToDate/UpToDate"
               for p in pair):
            return False
        if sorted(p.role for p in pair if p) != ["Primary", "Secondary"]:
            return False
    # Every target running, and automatic failback done: no move left pending.
    where = {t: target_on(lab, t) for t in TARGETS}
    return all(where.values()) and all(
        where[t] == node for t, (_, node, failback) in TARGETS.items() if failback == "auto")


def fence_constraints(lab: Lab, box: str) -> list[str]:
    """Constraints DRBD's fence-peer handler placed (and after-resync removes)."""
    out = ask(lab, box, ["cibadmin", "--query", "--scope", "constraints"]) or ""
    return re.findall(r'id="(drbd-fence-by-handler-[^"]+)"', out)


def fence_history(lab: Lab, node: str) -> str:
    """When Pacemaker last fenced ``node``, from the box that knows it."""
    return max((ask(lab, box, ["stonith_admin", "--last", node]) or "" for box in BOXES),
               key=len)


def fenced_after(lab: Lab, node: str, before: str) -> Callable[[], bool]:
    def check() -> bool:
        now = fence_history(lab, node)
        return now != before and "last fenced at" in now
    return check


def assert_same_data(lab: Lab, volume: str) -> None:
    """The replicated bytes are identical on both boxes (read past any cache)."""
    sums = []
    for box in BOXES:
        size = lab.exec(box, ["sh", "-c", f"drbdadm role {volume} | grep -q ^Primary && "
                                          f"blockdev --getsize64 $(drbdadm sh-dev {volume})"
                                          " || true"]).out.strip()
        sums.append(size)
    (size,) = [s for s in sums if s]
    digests = {lab.exec(box, ["sh", "-c", f"dd if=/dev/data/{volume} iflag=direct bs=1M "
                                          f"count={int(size)} iflag=count_bytes status=none "
                                          "| sha256sum"]).check().out.split()[0]
               for box in BOXES}
    assert len(digests) == 1, f"{volume}: the two boxes hold different data"


def split_brains(lab: Lab) -> list[str]:
    found = []
    for box in BOXES:
        out = lab.exec(box, ["sh", "-c", "dmesg | grep -i 'split-brain' || true"]).out
        found += [f"{box}: {line}" for line in out.splitlines()]
    return found


@dataclass
class Load:
    """The acknowledged-write verifier, running on the initiator until stopped."""

    initiator: Initiator
    disks: list[str]
    stop_file: str = "/tmp/failover-probe.stop"
    result: dict[str, Any] = field(default_factory=dict)
    _thread: threading.Thread | None = None

    def start(self) -> None:
        self.initiator.run("rm", "-f", self.stop_file)
        self._thread = threading.Thread(target=lambda: self.result.update(
            self.initiator.probe(self.disks, 900, self.stop_file)), daemon=True)
        self._thread.start()
        time.sleep(5)  # writes flowing before the fault

    def stop(self) -> dict[str, Any]:
        time.sleep(5)  # and after the recovery
        self.initiator.run("touch", self.stop_file)
        assert self._thread is not None
        self._thread.join(timeout=300)
        assert self.result, "the verifier returned nothing"
        return self.result


@contextmanager
def under_load(initiator: Initiator, disks: list[str], scenario: str,
               figures: dict[str, Any]) -> Iterator[dict[str, Any]]:
    """Run the body under the verifier; then 0 errors and 0 acknowledged writes lost."""
    load = Load(initiator, disks)
    load.start()
    started = time.monotonic()
    extra: dict[str, Any] = {}
    try:
        yield extra
    finally:
        result = load.stop()
    result.update(extra, scenario_s=round(time.monotonic() - started, 1))
    figures[scenario] = result
    print(f"\n{scenario}: " + json.dumps(result, sort_keys=True))
    assert result["errors"] == 0, result["error_text"]
    assert result["lost"] == 0
    assert result["writes"] > 100


def recovered(lab: Lab, timeout: float = RECOVERY) -> None:
    wait_for("both boxes back, volumes UpToDate on both, every target running",
             lambda: healthy(lab), timeout=timeout)
    assert not split_brains(lab), split_brains(lab)
    for volume in TARGETS:
        assert_same_data(lab, volume)


def written_kib(lab: Lab, box: str) -> int:
    """KiB this box's DRBD devices wrote to their disks (the dw counter)."""
    out = lab.exec(box, ["cat", "/proc/drbd"]).check().out
    return sum(int(n) for n in re.findall(r"\bdw:(\d+)", out))


def resync_kib(lab: Lab, box: str) -> int:
    """KiB the last resyncs from this box sent ("will sync N KB" in its kernel log)."""
    out = lab.exec(box, ["sh", "-c", "dmesg | grep 'as SyncSource' || true"]).out
    return sum(int(n) for n in re.findall(r"will sync (\d+) KB", out))


# What docs/failover.md recommends for Linux initiators.
INITIATOR_SETTINGS = {
    "node.session.timeo.replacement_timeout": "180",
    "node.conn[0].timeo.noop_out_interval": "5",
    "node.conn[0].timeo.noop_out_timeout": "10",
}


def login_all(initiator: Initiator) -> list[str]:
    disks = []
    for name, (portal, _, _) in TARGETS.items():
        initiator.configure(iqn(name), portal)
        for key, value in INITIATOR_SETTINGS.items():
            initiator.run(*initiator.node(iqn(name), portal), "-o", "update", "-n", key,
                          "-v", value)
        disks += initiator.login(iqn(name), portal, 1)
    return disks


def move(lab: Lab, target: str, node: str) -> None:
    result = iscsiha(lab, "target", "move", target, node)
    assert result.ok, result.out + result.err

