"""The lab, once per test session: booted before the first lab test, torn down after the last.

Needs root, /dev/net/tun, the host tools (iproute2, openipmi, corosync-qnetd,
mmdebstrap...) and the images that `image/build` writes to image/out/
(ISCSIHA_LAB_IMAGE and ISCSIHA_LAB_RUNNER name others). Without them the lab
tests skip and say what is missing; with CI=true they fail instead.

ISCSIHA_LAB_REUSE=1 uses a lab that is already up (`iscsiha-lab up`) and leaves
it running: for iterating on tests without a boot each time. test_console then boots
it again without a cluster when it has one.
"""

from __future__ import annotations

import os
import signal
from collections.abc import Iterator
from pathlib import Path
from types import FrameType

import pytest
from iscsiha_lab import cluster, processes
from iscsiha_lab.lab import CLUSTER_TIMEOUT, Lab
from iscsiha_lab.paths import LabImages, LabPaths
from iscsiha_lab.state import read_json

from iscsiha.errors import IscsihaError
from lab_tests.conftest import skip_or_fail

REPO = Path(__file__).resolve().parents[3]
# Where `python -m iscsiha_lab...` finds the lab and the product without an install.
PYTHONPATH = os.pathsep.join([str(REPO / "lab"), str(REPO)])


# The lab tests share one lab, booted once without a cluster. The console's tests come
# first: they form the cluster through the console as an admin would (with what the
# CLI's `cluster init` gets), and every later test uses that cluster. The basic ones run
# before any desired state is applied (they fence and split an unconfigured cluster).
ORDER = ("test_console", "test_agents_in_lab", "test_executors_on_a_box", "test_lab",
         "test_storage_path", "test_thin", "test_split_brain", "test_peer_channel",
         "test_audit", "test_failover", "test_reservations", "test_vaai",
         "test_support_bundle", "test_verify", "test_replace_box", "test_upgrade_pair",
         "test_throughput_bench")


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    def key(item: pytest.Item) -> int:
        name = item.path.stem
        here = item.path.parent == Path(__file__).parent
        return ORDER.index(name) + 1 if here and name in ORDER else 0

    items.sort(key=key)


# What a failed lab test leaves for the post-mortem: a fault's cause is gone with the lab.
DIAGNOSTICS = Path(os.environ.get("ISCSIHA_LAB_DIAGNOSTICS", "/var/tmp/iscsiha-lab-diagnostics"))
DIAGNOSE = (
    ("crm_mon", ["crm_mon", "-1", "-r", "-f", "-A", "-t"]),
    ("fencing", ["stonith_admin", "--history", "*", "--verbose"]),
    ("constraints", ["cibadmin", "--query", "--scope", "constraints"]),
    ("drbd", ["drbdadm", "status", "all"]),
    ("kernel", ["sh", "-c", "dmesg | tail -n 200"]),
    ("pacemaker", ["sh", "-c", "tail -n 1500 /var/log/pacemaker/pacemaker.log"]),
    ("journal", ["journalctl", "--no-pager", "-n", "800", "-u", "corosync",
                 "-u", "corosync-qdevice", "-u", "pacemaker"]),
)


def collect_diagnostics(lab: Lab, test: str) -> Path:
    """Each running appliance's cluster, DRBD and log state, one file per node."""
    folder = DIAGNOSTICS / test
    folder.mkdir(parents=True, exist_ok=True)
    for node in lab.topology.appliances:
        parts = []
        for title, argv in DIAGNOSE:
            try:
                result = lab.exec(node.name, argv, timeout=60)
                text = result.out + result.err
            except IscsihaError as exc:  # powered off, frozen: say so and go on
                text = f"(no answer: {exc})"
            parts.append(f"===== {title}: {' '.join(argv)}\n{text}")
        (folder / f"{node.name}.txt").write_text("\n".join(parts))
    return folder


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]) -> Iterator[None]:
    outcome = yield
    report = outcome.get_result()
    lab = getattr(item, "funcargs", {}).get("lab")
    if report.when in ("setup", "call") and report.failed and isinstance(lab, Lab):
        folder = collect_diagnostics(lab, item.name)
        summary = (folder / f"{lab.topology.appliances[0].name}.txt").read_text()
        report.sections.append(("lab diagnostics", f"saved in {folder}\n{summary[:6000]}"))


def lab_images() -> LabImages:
    def pick(env: str, default: Path) -> Path:
        return Path(os.environ[env]) if os.environ.get(env) else default

    return LabImages.resolve(
        pick("ISCSIHA_LAB_IMAGE", REPO / "image/out/iscsiha-lab-root.ext4"),
        pick("ISCSIHA_LAB_RUNNER", REPO / "image/out/uml-runner"),
        None,
    )


def _raise_interrupt(signum: int, frame: FrameType | None) -> None:
    raise KeyboardInterrupt(f"signal {signum}")


def leftovers(lab: Lab, recorded: list[processes.ProcessId]) -> list[str]:
    """What a torn-down lab must not leave: its processes (namespaces and mounts die with them)."""
    found = [f"process {p.pid} still running" for p in recorded if processes.is_running(p)]
    if lab.paths.control_socket.exists():
        found.append(f"control socket {lab.paths.control_socket}")
    for node in lab.topology.nodes:
        if lab.paths.power_file(node.name).exists():
            found.append(f"power record of {node.name}")
    return found


def recorded_processes(lab: Lab) -> list[processes.ProcessId]:
    found = []
    state = lab.state()
    if state is not None and state.supervisor is not None:
        found.append(state.supervisor)
    for node in lab.topology.nodes:
        data = read_json(lab.paths.power_file(node.name))
        if data:
            found.append(processes.ProcessId.from_json(data))
    for data in (read_json(lab.paths.root / "services.json") or {}).values():
        found.append(processes.ProcessId.from_json(data))
    return found


def say(message: str) -> None:
    print(f"lab: {message}", flush=True)


def has_cluster(lab: Lab) -> bool:
    """Whether either box was made a cluster member (a flashed box has no corosync.conf)."""
    return any(lab.exec(node.name, ["test", "-e", "/etc/corosync/corosync.conf"]).ok
               for node in lab.topology.appliances)


@pytest.fixture(scope="session")
def lab(booted: Lab) -> Lab:
    """The booted lab with its cluster: the one test_console formed through the console
    when it ran first, else one formed here with the CLI (what `iscsiha-lab up` does).
    A cluster left half made (a console test failed) is booted away first."""
    if has_cluster(booted):
        try:
            cluster.wait_formed(booted, 120, say)
            return booted
        except IscsihaError as exc:
            say(f"the cluster is not whole, so the lab boots again: {exc}")
            booted.down(say)
            booted.up(lab_images(), say)
            return booted
    cluster.form(booted, say)
    cluster.wait_formed(booted, CLUSTER_TIMEOUT, say)
    return booted


@pytest.fixture(scope="session")
def booted() -> Iterator[Lab]:
    """The lab, up for the session; its boxes as flashed unless ISCSIHA_LAB_REUSE=1
    found one running (cluster or not)."""
    lab = Lab(LabPaths.resolve(None))
    if os.environ.get("ISCSIHA_LAB_REUSE") == "1" and lab.supervisor() is not None:
        yield lab
        return
    images = lab_images()
    problems = lab.preflight(images)
    if problems:
        skip_or_fail("the lab cannot run here: " + "; ".join(
            f"{r.field} {r.value}: {r.message or r.code} (needs {r.allowed})"
            for p in problems for r in p.reports))
    # pytest turns Ctrl-C into KeyboardInterrupt and still runs this teardown;
    # make SIGTERM (a CI runner stopping us) do the same.
    previous = signal.signal(signal.SIGTERM, _raise_interrupt)
    recorded: list[processes.ProcessId] = []
    try:
        try:
            lab.up(images, progress=say, form_cluster=False)
        except IscsihaError as exc:
            pytest.fail(f"the lab did not come up: {exc}")
        recorded = recorded_processes(lab)
        yield lab
    finally:
        recorded += recorded_processes(lab)  # nodes powered on again since, by a test
        try:
            lab.down(progress=say)
        finally:
            signal.signal(signal.SIGTERM, previous)
    left = leftovers(lab, recorded)
    if left:
        pytest.fail("lab teardown left: " + "; ".join(left))
