"""The lab's pure parts and its exec channel, without root, UML or a network: fast, everywhere."""

from __future__ import annotations

import base64
import json
import os
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from ipaddress import IPv4Network
from pathlib import Path

import pytest
from iscsiha_lab import agent, bmc, bmc_power, control, initiator_root
from iscsiha_lab.desired import lab_config
from iscsiha_lab.guest import GuestChannel
from iscsiha_lab.lab import Lab
from iscsiha_lab.paths import LabImages, LabPaths
from iscsiha_lab.topology import IFNAME_MAX, default_topology
from iscsiha_lab.uml import AGENT_UNIT, REBOOT_PROGRAM, uml_argv

from iscsiha.errors import IscsihaError, Secret
from iscsiha.plan.corosync import corosync_conf
from lab_tests.scenarios.conftest import PYTHONPATH

TOPOLOGY = default_topology()
PATHS = LabPaths(Path("/run/iscsiha-lab"))


# -- topology --------------------------------------------------------------------------------


def test_every_address_is_unique_and_inside_the_lab_range() -> None:
    lab_range = IPv4Network("10.99.0.0/16")
    addresses = [i.address for n in TOPOLOGY.nodes for i in TOPOLOGY.interfaces(n)]
    addresses += [TOPOLOGY.qnetd_address, *(TOPOLOGY.bmc_address(n) for n in TOPOLOGY.appliances)]
    assert len(addresses) == len(set(addresses))
    assert all(a in lab_range for a in addresses)


def test_interface_names_fit_linux_limits_and_are_unique() -> None:
    names = [i.tap for n in TOPOLOGY.nodes for i in TOPOLOGY.interfaces(n)]
    names += [n.bridge for n in TOPOLOGY.networks]
    assert len(names) == len(set(names))
    assert max(len(n) for n in names) <= IFNAME_MAX


def test_appliances_have_every_network_and_the_initiator_both_storage_paths() -> None:
    for node in TOPOLOGY.appliances:
        assert set(node.networks) == {n.name for n in TOPOLOGY.networks}
    assert TOPOLOGY.initiators[0].networks == ("storage", "storage2")


@pytest.mark.parametrize(
    ("lookup", "value", "allowed"),
    [
        (lambda: TOPOLOGY.node("nosuch"), "nosuch", "san-a, san-b, initiator"),
        (lambda: TOPOLOGY.network("eth0"), "eth0", "mgmt, link0, link1, repl, storage, storage2"),
        (lambda: TOPOLOGY.tap(TOPOLOGY.node("initiator"), "repl"), "repl", "storage, storage2"),
        (lambda: TOPOLOGY.bmc_address(TOPOLOGY.node("initiator")), "initiator", "san-a, san-b"),
    ],
)
def test_bad_names_are_reported_with_what_is_allowed(
    lookup: Callable[[], object], value: str, allowed: str
) -> None:
    with pytest.raises(IscsihaError) as caught:
        lookup()
    report = caught.value.reports[0]
    assert report.value == value
    assert report.allowed == allowed


# -- generated files ---------------------------------------------------------------------------


def test_lab_is_a_valid_desired_state_whose_corosync_uses_both_links_and_qnetd() -> None:
    config = lab_config(TOPOLOGY, Secret("lab-password"))
    assert [n.name for n in config.cluster.nodes] == ["san-a", "san-b"]
    conf = corosync_conf(config)
    assert "transport: knet" in conf
    for node in TOPOLOGY.appliances:
        assert f"ring0_addr: {TOPOLOGY.address(node, 'link0')}" in conf
        assert f"ring1_addr: {TOPOLOGY.address(node, 'link1')}" in conf
    assert f"host: {TOPOLOGY.qnetd_address}" in conf
    assert "algorithm: ffsplit" in conf
    assert "two_node" not in conf
    assert conf.count("{") == conf.count("}")


def test_bmc_config_listens_on_the_bmc_address_with_a_quoted_power_command() -> None:
    node = TOPOLOGY.node("san-b")
    conf = bmc.lan_conf(TOPOLOGY, node, "Secret123", ["/usr/bin/python3", "-m", "x", "san-b"])
    assert f"addr {TOPOLOGY.bmc_address(node)} 623" in conf
    assert 'chassis_control "/usr/bin/python3 -m x san-b"' in conf
    assert f'"{TOPOLOGY.bmc_user}" "Secret123" admin' in conf
    with pytest.raises(ValueError):
        bmc.lan_conf(TOPOLOGY, node, 'bad"password', ["/bin/true"])
    assert len(bmc.new_password()) == bmc.PASSWORD_LENGTH


def test_uml_command_line_carries_disks_taps_and_the_agent_unit() -> None:
    node = TOPOLOGY.node("san-a")
    boot = ["root=/dev/ubda3", "iscsiha.slot=b", "systemd.mask=x.service"]
    argv = uml_argv(TOPOLOGY, PATHS, node, "/runner", boot)
    # UML runs with argv[0] naming the reboot program, which its reboot executes.
    assert argv[:6] == ["/usr/sbin/chroot", "/runner", "/bin/bash", "-c",
                        'exec -a "$0" /usr/bin/linux.uml "$@"', REBOOT_PROGRAM]
    assert "ubd0=/mnt/lab/nodes/san-a/boot.img" in argv
    assert argv[argv.index(boot[0]):argv.index(boot[0]) + 4] == [*boot, "rw"]
    assert "ubd1=/mnt/lab/nodes/san-a/data.img" in argv
    with pytest.raises(ValueError):
        uml_argv(TOPOLOGY, PATHS, node, "/runner")  # an appliance boots what was chosen
    assert sum(a.startswith("vec") for a in argv) == len(node.networks)
    credential = next(a for a in argv if a.startswith("systemd.set_credential_binary="))
    unit = base64.b64decode(credential.split(":", 1)[1]).decode()
    assert "hostfs=/mnt/lab/nodes/san-a/share" in unit
    assert f"systemd.wants={AGENT_UNIT}" in argv
    # The kernel keeps at most COMMAND_LINE_SIZE bytes of it; stay well inside.
    assert len(" ".join(argv[6:])) < 2048
    initiator = uml_argv(TOPOLOGY, PATHS, TOPOLOGY.node("initiator"), "/runner")
    assert "ubd0=/mnt/lab/nodes/initiator/root.cow,/mnt/initiator.img" in initiator
    assert "root=/dev/ubda" in initiator
    assert not any(a.startswith("ubd1=") for a in initiator)


def test_missing_inputs_are_named_with_what_is_expected(tmp_path: Path) -> None:
    images = LabImages(tmp_path / "no.ext4", tmp_path / "no-runner", tmp_path / "no-init.ext4")
    reports = [r for p in images.problems() for r in p.reports]
    assert [(r.code, r.field) for r in reports] == [
        ("missing-image", "image"), ("missing-runner", "runner"),
        ("missing-image", "initiator-image")]
    assert reports[0].value == str(tmp_path / "no.ext4")


def test_paths_with_shell_characters_are_refused() -> None:
    with pytest.raises(IscsihaError) as caught:
        LabPaths.resolve(Path("/tmp/lab dir"))
    assert caught.value.reports[0].code == "unsafe-path"


def test_host_mirror_is_read_from_either_apt_format(tmp_path: Path) -> None:
    deb822 = tmp_path / "debian.sources"
    deb822.write_text("Types: deb\nURIs: http://mirror.test/debian\nSuites: bookworm\n")
    assert initiator_root.host_mirror((deb822,)) == "http://mirror.test/debian"
    one_line = tmp_path / "sources.list"
    one_line.write_text("deb [arch=amd64] http://other.test/debian/ bookworm main\n")
    assert initiator_root.host_mirror((one_line,)) == "http://other.test/debian/"
    empty = tmp_path / "empty.list"
    empty.write_text("deb http://example.test/ubuntu noble main\n")
    with pytest.raises(IscsihaError):
        initiator_root.host_mirror((empty,))


# -- the exec channel, with the real agent serving a folder ------------------------------------


@pytest.fixture
def channel(tmp_path: Path) -> Iterator[GuestChannel]:
    paths = LabPaths(tmp_path)
    share = paths.share_dir("san-a")
    share.mkdir(parents=True)
    server = agent.Server(share)
    thread = threading.Thread(target=server.serve, daemon=True)
    thread.start()
    channel = GuestChannel(paths, "san-a", alive=lambda: True)
    deadline = time.monotonic() + 10
    while not channel.ready() and time.monotonic() < deadline:
        time.sleep(0.01)
    yield channel
    server.stop.set()
    thread.join(timeout=5)


def test_channel_passes_exit_code_output_and_stdin(channel: GuestChannel) -> None:
    result = channel.run([sys.executable, "-c",
                          "import sys; d = sys.stdin.read(); print(d.upper()); "
                          "print('e', file=sys.stderr); sys.exit(4)"], input="abc")
    assert (result.returncode, result.out, result.err) == (4, "ABC\n", "e\n")


def test_channel_keeps_binary_output_exact(channel: GuestChannel) -> None:
    data = bytes(range(256))
    assert channel.run(["cat"], input=data).stdout == data


def test_channel_reports_a_missing_program_as_127(channel: GuestChannel) -> None:
    assert channel.run(["/nonexistent/program"]).returncode == 127


def test_channel_kills_a_command_at_its_timeout(channel: GuestChannel) -> None:
    result = channel.run(["sleep", "30"], timeout=0.5)
    assert result.returncode == 124
    assert "timed out" in result.err


def test_channel_check_raises_with_the_command_and_its_error(channel: GuestChannel) -> None:
    with pytest.raises(IscsihaError) as caught:
        channel.run(["sh", "-c", "echo boom >&2; exit 2"], check=True)
    assert "boom" in caught.value.reports[0].message


def test_channel_refuses_a_node_whose_agent_is_not_up(tmp_path: Path) -> None:
    with pytest.raises(IscsihaError) as caught:
        GuestChannel(LabPaths(tmp_path), "san-b", alive=lambda: False).run(["true"])
    assert caught.value.reports[0].code == "node-not-ready"


# -- the BMC's power program against a stand-in supervisor -------------------------------------


def test_bmc_power_program_speaks_ipmi_sims_chassis_control_format(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    sock_path = tmp_path / "control.sock"
    seen: list[dict[str, str]] = []
    listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    listener.bind(str(sock_path))
    listener.listen(4)

    def serve() -> None:
        for _ in range(3):
            conn, _addr = listener.accept()
            with conn:
                request = json.loads(conn.makefile("rb").readline())
                seen.append(request)
                conn.sendall(json.dumps({"ok": True, "power": "frozen"}).encode())

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    assert bmc_power.main([str(sock_path), "san-b", "get", "power"]) == 0
    assert capsys.readouterr().out == "power:1\n"  # frozen still draws power
    assert bmc_power.main([str(sock_path), "san-b", "set", "power", "0", "boot", "pxe"]) == 0
    assert bmc_power.main([str(sock_path), "san-b", "set", "power", "1"]) == 0
    thread.join(timeout=5)
    listener.close()
    assert [r["op"] for r in seen] == ["power-state", "power-off", "power-on"]
    assert {r["node"] for r in seen} == {"san-b"}


def test_control_errors_round_trip_as_reports() -> None:
    error = IscsihaError.single("unknown-node", "node", "x", "san-a, san-b", "not a node")
    reports = control.error_reports(control.error_answer(error))
    assert reports == list(error.reports)


# -- the CLI without a lab ---------------------------------------------------------------------


def run_cli(tmp_path: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "iscsiha_lab.cli", "--state-dir", str(tmp_path / "lab"), *args],
        capture_output=True, text=True, timeout=60, check=False,
        env={**os.environ, "PYTHONPATH": PYTHONPATH})


def test_cli_names_a_bad_node_and_the_allowed_ones(tmp_path: Path) -> None:
    done = run_cli(tmp_path, "exec", "san-c", "--", "true")
    assert done.returncode == 1
    assert "'san-c'" in done.stderr and "san-a, san-b, initiator" in done.stderr


def test_cli_names_a_bad_link(tmp_path: Path) -> None:
    done = run_cli(tmp_path, "cut", "eth9")
    assert done.returncode == 1
    assert "'eth9'" in done.stderr and "mgmt, link0, link1, repl, storage, storage2" in done.stderr


def test_cli_without_a_lab_says_so(tmp_path: Path) -> None:
    done = run_cli(tmp_path, "kill", "san-a")
    assert done.returncode == 1 and "no lab is running" in done.stderr
    assert run_cli(tmp_path, "status").stdout.startswith("no lab running")
    assert run_cli(tmp_path, "down").returncode == 0


def test_cli_up_names_a_missing_image(tmp_path: Path) -> None:
    done = run_cli(tmp_path, "up", "--image", str(tmp_path / "none.ext4"),
                   "--runner", str(tmp_path / "no-runner"))
    assert done.returncode == 1
    assert f"'{tmp_path / 'none.ext4'}'" in done.stderr
    assert "missing-runner" in done.stderr
    assert not (tmp_path / "lab").exists()  # refused before anything was made


def test_cli_up_never_wipes_a_directory_the_lab_did_not_make(tmp_path: Path) -> None:
    foreign = tmp_path / "lab"
    foreign.mkdir()
    (foreign / "precious.txt").write_text("keep me")
    done = run_cli(tmp_path, "up")
    assert done.returncode == 1
    assert "not-a-lab-directory" in done.stderr
    assert (foreign / "precious.txt").read_text() == "keep me"


def test_preflight_names_every_missing_prerequisite(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(os, "geteuid", lambda: 1000)
    images = LabImages(tmp_path / "none.ext4", tmp_path / "runner", None)
    codes = [r.code for p in Lab(LabPaths(tmp_path)).preflight(images) for r in p.reports]
    assert codes[0] == "not-root"
    assert "missing-image" in codes and "missing-runner" in codes


def test_the_product_sets_the_appliances_links_and_the_lab_only_management() -> None:
    from iscsiha_lab import box_networks

    topology = default_topology()
    first, peer = topology.appliances
    names = [i.network.name for i in topology.product_interfaces(first)]
    assert names == ["link0", "link1", "repl", "storage", "storage2"]
    assert all(not topology.product_interfaces(n) for n in topology.initiators)
    lines = box_networks.console_lines(topology, peer)
    assert lines[0] == "/box/networks add name=link0 link=vec1 address=10.99.10.12/24"
    assert lines[-1] == "/box/networks apply"
    argvs = box_networks.cli_argvs(topology, peer)
    assert argvs[0] == ["iscsiha", "network", "set", "link0", "--link", "vec1",
                        "--address", "10.99.10.12/24"]
