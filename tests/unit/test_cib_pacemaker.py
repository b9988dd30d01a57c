"""Pacemaker's own tools accept the generated CIB (needs crm_verify: pacemaker-cli-utils)."""

from __future__ import annotations

import re
import shutil
from pathlib import Path

from iscsiha.commands.config import plan
from iscsiha.executors.runner import Runner
from iscsiha.model.load import load_text
from tests.conftest import EXAMPLE, skip_or_fail


def whole_cib(fragment: str, nodes: tuple[str, str],
              attributes: tuple[tuple[str, str], ...] = ()) -> str:
    """Wrap the fragment as a CIB of two online nodes with quorum, as crm_verify wants;
    ``attributes``: node attributes both nodes carry (name, value)."""
    node_xml = "".join(f'<node id="{i}" uname="{n}"/>' for i, n in enumerate(nodes, 1))
    state = "".join(
        f'<node_state id="{i}" uname="{n}" in_ccm="true" crmd="online" join="member" '
        f'expected="member"><transient_attributes id="{i}"><instance_attributes '
        f'id="status-{i}">'
        + "".join(f'<nvpair id="status-{i}-{k}" name="{k}" value="{v}"/>' for k, v in attributes)
        + "</instance_attributes></transient_attributes></node_state>"
        for i, n in enumerate(nodes, 1))
    body = fragment.replace("</configuration>", f"<nodes>{node_xml}</nodes></configuration>")
    return (f'<cib have-quorum="1" validate-with="pacemaker-3.9" admin_epoch="0" epoch="1" '
            f'num_updates="0">{body}<status>{state}</status></cib>')


def test_crm_verify_accepts_the_planned_cib(tmp_path: Path) -> None:
    crm_verify = shutil.which("crm_verify")
    if crm_verify is None:
        skip_or_fail("crm_verify is not installed (apt-get install pacemaker-cli-utils)")
        return
    config = load_text(EXAMPLE.read_text())
    cib_file = tmp_path / "cib.xml"
    cib_file.write_text(whole_cib(plan(config).cib, ("san-a", "san-b")))
    result = Runner().run([crm_verify, "-V", "-x", str(cib_file)], check=False)
    assert result.returncode == 0, result.stderr


def test_crm_verify_rejects_a_broken_cib(tmp_path: Path) -> None:
    """The check above can fail: a constraint on a missing resource is refused."""
    crm_verify = shutil.which("crm_verify")
    if crm_verify is None:
        skip_or_fail("crm_verify is not installed (apt-get install pacemaker-cli-utils)")
        return
    config = load_text(EXAMPLE.read_text())
    good = plan(config).cib
    broken = good.replace('with-rsc="drbd-vm-clone"', 'with-rsc="no-such-rsc"')
    assert broken != good
    cib_file = tmp_path / "cib.xml"
    cib_file.write_text(whole_cib(broken, ("san-a", "san-b")))
    assert Runner().run([crm_verify, "-x", str(cib_file)], check=False).returncode != 0


def _predecessors(dot: str) -> dict[str, set[str]]:
    """Each action of a crm_simulate transition graph -> the actions it waits for."""
    before: dict[str, set[str]] = {}
    for first, then in re.findall(r'^"([^"]+)" -> "([^"]+)"', dot, re.MULTILINE):
        before.setdefault(then, set()).add(first)
    return before


def _waits_for(before: dict[str, set[str]], action: str) -> set[str]:
    seen: set[str] = set()
    todo = [action]
    while todo:
        for first in before.get(todo.pop(), set()) - seen:
            seen.add(first)
            todo.append(first)
    return seen


def test_a_target_s_addresses_start_without_waiting_for_the_promotion(
        tmp_path: Path) -> None:
    """Pacemaker's own scheduler, on the planned CIB: the target waits for its DRBD
    promotion, its addresses (port blocked) do not, so they come up in parallel."""
    crm_simulate = shutil.which("crm_simulate")
    if crm_simulate is None:
        skip_or_fail("crm_simulate is not installed (apt-get install pacemaker-cli-utils)")
        return
    config = load_text(EXAMPLE.read_text())
    cib_file, dot_file = tmp_path / "cib.xml", tmp_path / "graph.dot"
    # Both DRBD sides UpToDate, as the linbit agent scores them, and the storage
    # network's hosts answering: the scheduler then promotes and starts every target.
    scores = tuple((f"master-drbd-{t.name}", "10000") for t in config.targets)
    pings = tuple((f"ping-{n.name}", "1") for n in config.cluster.networks)
    cib_file.write_text(whole_cib(plan(config).cib, ("san-a", "san-b"), scores + pings))
    Runner().run([crm_simulate, "-x", str(cib_file), "-S", "-D", str(dot_file)])
    before = _predecessors(dot_file.read_text())
    target = config.targets[0].name
    (address,) = [a for a in before if re.fullmatch(f"target-{target}-ip0_start_0 \\S+", a)]
    (lio,) = [a for a in before if re.fullmatch(f"target-{target}-lio_start_0 \\S+", a)]
    promote = re.compile(f"drbd-{target}(:\\d+)?_promote_0 ")
    assert any(promote.match(a) for a in _waits_for(before, lio))
    assert not any(promote.match(a) for a in _waits_for(before, address))


def _running_on(cib: str, rsc: str) -> set[str]:
    """Nodes whose recorded history shows ``rsc`` started (crm_simulate's output CIB)."""
    nodes = set()
    for state in re.findall(r"<node_state .*?</node_state>", cib, re.DOTALL):
        uname = re.search(r'uname="([^"]+)"', state)
        found = re.search(f'<lrm_resource id="{rsc}".*?</lrm_resource>', state, re.DOTALL)
        if uname and found and 'operation="start"' in found.group(0) \
                and 'operation="stop"' not in found.group(0):
            nodes.add(uname.group(1))
    return nodes


def _started(tmp_path: Path) -> tuple[str, Path]:
    """crm_simulate's path and the example's planned CIB after the scheduler started
    everything (both boxes up, DRBD promotable, storage reachable)."""
    crm_simulate = shutil.which("crm_simulate")
    if crm_simulate is None:
        skip_or_fail("crm_simulate is not installed (apt-get install pacemaker-cli-utils)")
    config = load_text(EXAMPLE.read_text())
    scores = tuple((f"master-drbd-{t.name}", "10000") for t in config.targets)
    pings = tuple((f"ping-{n.name}", "1") for n in config.cluster.networks)
    planned, started = tmp_path / "planned.xml", tmp_path / "started.xml"
    planned.write_text(whole_cib(plan(config).cib, ("san-a", "san-b"), scores + pings))
    Runner().run([crm_simulate, "-x", str(planned), "-S", "-O", str(started)])
    return crm_simulate, started


def test_moving_targets_leaves_the_watchdog_device_where_it_runs(tmp_path: Path) -> None:
    """Pacemaker's scheduler, on the planned CIB: when a target moves to the other box,
    the watchdog fence device stays where it runs."""
    crm_simulate, started = _started(tmp_path)
    crm_resource = shutil.which("crm_resource")
    assert crm_resource is not None  # pacemaker-cli-utils, as crm_simulate
    moved = tmp_path / "moved.xml"
    (home,) = _running_on(started.read_text(), "watchdog")
    # A target joins the box the device runs on, as after a failover or a move: that box
    # now runs more than the other, which the scheduler evens out where nothing sticks.
    (target,) = [t.name for t in load_text(EXAMPLE.read_text()).targets
                 if _running_on(started.read_text(), f"target-{t.name}-lio") != {home}]
    Runner().run([crm_resource, "--move", "-r", f"target-{target}", "--node", home],
                 env={"CIB_file": str(started)})
    Runner().run([crm_simulate, "-x", str(started), "-S", "-O", str(moved)])
    assert _running_on(moved.read_text(), "watchdog") == {home}


def test_a_fence_device_whose_monitor_fails_is_not_restarted(tmp_path: Path) -> None:
    """Pacemaker's scheduler, on the planned CIB: a BMC that stops answering fails its
    device's monitor, and the device is neither stopped nor restarted (a restart joined
    a failover's transition and held the targets back)."""
    crm_simulate, started = _started(tmp_path)
    failed = tmp_path / "failed.xml"
    (home,) = _running_on(started.read_text(), "fence-san-b")
    out = Runner().run([crm_simulate, "-x", str(started), "-S", "-O", str(failed),
                        "-i", f"fence-san-b_monitor_60000@{home}=1"]).stdout
    assert "Injecting fence-san-b_monitor_60000" in out
    summary = out.split("Transition Summary:")[1].split("Executing Cluster Transition:")[0]
    assert "fence-san-b" not in summary  # without on-fail=ignore: "Recover fence-san-b"
    assert _running_on(failed.read_text(), "fence-san-b") == {home}
