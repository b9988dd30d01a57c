"""This box's network file: checks, edits that write nothing when bad, the networkd files
it plans, and the trial that puts the previous files back unless confirmed."""

from __future__ import annotations

import os
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import pytest

from iscsiha.commands import network
from iscsiha.errors import IscsihaError
from iscsiha.executors.networkd import Networkd
from iscsiha.model import box_network

GOOD: dict[str, Any] = {
    "addresses": {"mgmt": "192.168.1.21/24", "link0": "10.10.0.11/24", "repl": "10.20.0.11/24"},
    "links": {"mgmt": "eno0", "link0": "eno1", "repl": "bond0"},
    "mtu": {"repl": 9000},
    "gateway": {"mgmt": "192.168.1.1"},
    "bonds": {"bond0": {"members": ["ens1f0", "ens1f1"], "mode": "802.3ad"}},
    "dns": ["192.168.1.1"],
}


def codes(data: dict[str, Any]) -> list[tuple[str, str]]:
    with pytest.raises(IscsihaError) as caught:
        box_network.load_data(data)
    return [(r.code, r.field) for r in caught.value.reports]


def test_a_full_file_is_read() -> None:
    box = box_network.load_data(GOOD)
    assert [n for n, _ in box.addresses] == ["mgmt", "link0", "repl"]
    assert dict(box.mtus) == {"mgmt": 1500, "link0": 1500, "repl": 9000}
    assert str(dict(box.gateways)["mgmt"]) == "192.168.1.1"
    assert [b.name for b in box.bonds] == ["bond0"]


@pytest.mark.parametrize(("change", "expected"), [
    ({"addresses": {"mgmt": "192.168.1.0/24"}, "links": {"mgmt": "eno0"}},
     ("bad-address", "addresses.mgmt")),
    ({"addresses": {"mgmt": "192.168.1.21"}, "links": {"mgmt": "eno0"}},
     ("bad-address", "addresses.mgmt")),
    ({"addresses": {"mgmt": "127.0.0.2/8"}, "links": {"mgmt": "eno0"}},
     ("bad-address", "addresses.mgmt")),
    ({"addresses": {"mgmt": "10.0.0.1/24\n"}, "links": {"mgmt": "eno0"}},
     ("bad-address", "addresses.mgmt")),
    ({"addresses": {"Bad Name": "10.0.0.1/24"}}, ("bad-name", "addresses.Bad Name")),
    ({"addresses": {"a": "10.0.0.1/24", "b": "10.0.0.2/25"}, "links": {"a": "e1", "b": "e2"}},
     ("overlapping-subnets", "addresses.b")),
    ({"addresses": {"a": "10.0.0.1/24"}}, ("network-without-link", "links")),
    ({"addresses": {"a": "10.0.0.1/24"}, "links": {"a": "e1"}, "mtu": {"a": 100}},
     ("out-of-range", "mtu.a")),
    ({"addresses": {"a": "10.0.0.1/24"}, "links": {"a": "e1"}, "mtu": {"b": 1500}},
     ("unknown-network", "mtu.b")),
    ({"addresses": {"a": "10.0.0.1/24"}, "links": {"a": "e1"}, "gateway": {"a": "10.1.0.1"}},
     ("gateway-outside-subnet", "gateway.a")),
    ({"addresses": {"a": "10.0.0.1/24", "b": "10.1.0.1/24"}, "links": {"a": "e1", "b": "e2"},
      "gateway": {"a": "10.0.0.254", "b": "10.1.0.254"}}, ("two-default-routes", "gateway.b")),
    ({"addresses": {"a": "10.0.0.1/24"}, "links": {"a": "bond0"},
      "bonds": {"bond0": {"members": []}}}, ("bond-without-members", "bonds.bond0.members")),
    ({"addresses": {"a": "10.0.0.1/24"}, "links": {"a": "e1"}, "dns": ["x", "1.1.1.1"]},
     ("bad-address", "dns[0]")),
    ({"addresses": {"a": "10.0.0.1/24"}, "links": {"a": "e1"}, "surprise": 1},
     ("unknown-key", "surprise")),
])
def test_what_cannot_work_is_refused_naming_the_key(change: dict[str, Any],
                                                    expected: tuple[str, str]) -> None:
    assert expected in codes(change)


def test_the_planned_files_carry_gateway_dns_bond_and_mtu() -> None:
    files = network.planned(box_network.load_data(GOOD))
    assert sorted(files) == ["10-iscsiha-bond0.netdev", "10-iscsiha-bond0.network",
                             "10-iscsiha-eno0.network", "10-iscsiha-eno1.network",
                             "10-iscsiha-ens1f0.network", "10-iscsiha-ens1f1.network"]
    mgmt = files["10-iscsiha-eno0.network"]
    assert "Address=192.168.1.21/24" in mgmt and "Gateway=192.168.1.1" in mgmt
    assert "DNS=192.168.1.1" in mgmt
    assert "MTUBytes=9000" in files["10-iscsiha-bond0.netdev"]
    assert "Gateway" not in files["10-iscsiha-eno1.network"]


class Recorder:
    def __init__(self) -> None:
        self.argvs: list[list[str]] = []

    def run(self, argv: Sequence[str], **_: Any) -> None:
        assert argv[0].startswith("/"), argv  # the real Runner takes absolute paths only
        self.argvs.append(list(argv))


@pytest.fixture
def env(tmp_path: Path) -> network.NetworkEnv:
    sys_net = tmp_path / "sys"
    for nic in ("lo", "eno0", "eno1", "ens1f0", "ens1f1"):
        (sys_net / nic).mkdir(parents=True)
    waiters: list[tuple[list[str], float]] = []
    e = network.NetworkEnv(
        networkd=Networkd(Recorder(), str(tmp_path)),  # type: ignore[arg-type]
        start_waiter=lambda argv, s: waiters.append((list(argv), s)),
        own_addresses=lambda: [],
        box_file=str(tmp_path / "etc/iscsiha/network.toml"), sys_net=str(sys_net))
    e.waiters = waiters  # type: ignore[attr-defined]
    return e


def test_edits_build_the_same_box_as_the_hand_written_file(env: network.NetworkEnv) -> None:
    with pytest.raises(IscsihaError) as caught:  # a bond no network uses: nothing written
        network.set_bond(env, "bond0", ["ens1f0", "ens1f1"], "802.3ad")
    assert caught.value.reports[0].code == "bonds-without-links"
    assert not os.path.exists(env.box_file)
    network.set_network(env, "mgmt", "eno0", "192.168.1.21/24", gateway="192.168.1.1")
    network.set_network(env, "link0", "eno1", "10.10.0.11/24")
    network.set_network(env, "repl", "bond0", "10.20.0.11/24", mtu=9000)
    network.set_bond(env, "bond0", ["ens1f0", "ens1f1"], "802.3ad")
    network.set_dns(env, ["192.168.1.1"])
    assert network.planned(network.load(env)) == network.planned(box_network.load_data(GOOD))
    text_before = Path(env.box_file).read_text()
    with pytest.raises(IscsihaError) as caught:
        network.set_network(env, "link1", "eno1", "10.10.0.12/24")
    assert caught.value.reports[0].code == "overlapping-subnets"
    assert Path(env.box_file).read_text() == text_before
    with pytest.raises(IscsihaError):  # bond0 would carry nothing
        network.delete_network(env, "repl")
    assert Path(env.box_file).read_text() == text_before


def test_apply_is_a_trial_that_reverts_at_its_deadline(env: network.NetworkEnv,
                                                      tmp_path: Path) -> None:
    network.set_network(env, "mgmt", "eno0", "192.168.1.21/24")
    first = network.apply(env, 10)
    assert first is not None
    network.confirm(env)
    before = env.networkd.live()
    network.set_network(env, "mgmt", "eno0", "192.168.7.21/24")
    trial = network.apply(env, 10)
    assert trial is not None and "192.168.7.21" in env.networkd.live()["10-iscsiha-eno0.network"]
    argv, seconds = env.waiters[-1]  # type: ignore[attr-defined]
    assert argv == [network.ISCSIHA, "network", "revert", "--trial", trial.id, "--wait"]
    assert seconds > 10
    with pytest.raises(IscsihaError) as caught:  # one trial at a time
        network.apply(env, 10)
    assert caught.value.reports[0].code == "trial-pending"
    assert network.revert(env, "not-this-one") is None
    assert network.revert(env, trial.id) is not None
    assert env.networkd.live() == before
    assert network.state_line(env, network.load(env)).startswith("CHANGED")


def test_the_waiter_reverts_only_an_unconfirmed_trial(env: network.NetworkEnv) -> None:
    network.set_network(env, "mgmt", "eno0", "192.168.1.21/24")
    trial = network.apply(env, 10)
    assert trial is not None
    network.confirm(env)
    assert network.revert(env, trial.id, wait=True) is None  # confirmed: returns at once
    assert "192.168.1.21" in env.networkd.live()["10-iscsiha-eno0.network"]
    network.set_network(env, "mgmt", "eno0", "192.168.2.21/24")
    second = network.apply(env, 10)
    assert second is not None
    record = Path(env.networkd.trial_path)
    record.write_text(record.read_text().replace(str(second.deadline), str(time.time())))
    assert network.revert(env, second.id, wait=True) is not None
    assert "192.168.1.21" in env.networkd.live()["10-iscsiha-eno0.network"]


def test_a_reboot_inside_the_window_puts_the_files_back_without_networkctl(
        env: network.NetworkEnv) -> None:
    network.set_network(env, "mgmt", "eno0", "192.168.1.21/24")
    assert network.apply(env, 60) is not None
    runner: Recorder = env.networkd.runner  # type: ignore[assignment]
    ran = len(runner.argvs)
    assert network.revert(env, boot=True) is not None
    assert env.networkd.live() == {} and len(runner.argvs) == ran


def test_a_missing_nic_is_refused_before_anything_changes(env: network.NetworkEnv) -> None:
    network.set_network(env, "mgmt", "eth9", "192.168.1.21/24")
    with pytest.raises(IscsihaError) as caught:
        network.apply(env, 60)
    assert caught.value.reports[0].code == "no-such-nic"
    assert "eth9" in caught.value.reports[0].value
    assert env.networkd.live() == {} and env.networkd.trial() is None


def test_a_change_that_drops_the_admin_s_ssh_address_is_refused(
        env: network.NetworkEnv) -> None:
    from ipaddress import ip_address
    env.ssh_connection = "192.168.1.50 50000 192.168.1.30 22"
    env.own_addresses = lambda: [("eno0", ip_address("192.168.1.30"), 24)]
    network.set_network(env, "mgmt", "eno0", "192.168.1.21/24")
    with pytest.raises(IscsihaError) as caught:
        network.apply(env, 60)
    assert caught.value.reports[0].code == "would-cut-session"
    network.set_network(env, "mgmt", "eno0", "192.168.1.30/24")
    assert network.apply(env, 60) is not None


def test_a_window_outside_the_range_is_refused(env: network.NetworkEnv) -> None:
    with pytest.raises(IscsihaError) as caught:
        network.apply(env, 5)
    assert caught.value.reports[0].code == "bad-window"


def test_a_damaged_trial_record_is_reported_not_a_traceback(env: network.NetworkEnv) -> None:
    Path(env.networkd.trial_path).parent.mkdir(parents=True)
    Path(env.networkd.trial_path).write_text('{"id": 1, "previous": {"../../x": ""}}')
    with pytest.raises(IscsihaError) as caught:
        network.confirm(env)
    assert caught.value.reports[0].code == "bad-trial-record"


def test_apply_reports_an_address_networkd_did_not_put_in_place(
        env: network.NetworkEnv) -> None:
    from ipaddress import ip_address
    network.set_network(env, "mgmt", "eno0", "192.168.1.21/24")
    network.set_network(env, "link0", "eno1", "10.10.0.11/24")
    env.address_wait = 0.0
    env.own_addresses = lambda: [("eno0", ip_address("192.168.1.21"), 24),
                                 ("eno0", ip_address("10.10.0.11"), 24)]  # on the wrong NIC
    assert network.missing_addresses(env, network.load(env)) == ["10.10.0.11/24 on eno1"]


def test_nics_lists_each_link_with_its_mac_state_and_addresses(
        env: network.NetworkEnv) -> None:
    from ipaddress import ip_address
    sys_net = Path(env.sys_net)
    (sys_net / "eno0" / "address").write_text("52:54:00:aa:bb:01\n")
    (sys_net / "eno0" / "operstate").write_text("up\n")
    (sys_net / "eno1" / "address").write_text("\x1b[31mevil\n")  # not what a kernel writes
    env.own_addresses = lambda: [("eno0", ip_address("192.168.1.21"), 24)]
    lines = network.nics(env)
    assert lines[0].split() == ["eno0", "52:54:00:aa:bb:01", "up", "192.168.1.21/24"]
    assert lines[1].split() == ["eno1", "?", "?", "-"]
    assert not any(line.startswith("lo ") for line in lines)


GOLDEN = Path(__file__).resolve().parents[1] / "golden" / "box-networkd"
BOX_EXAMPLE = Path(__file__).resolve().parents[2] / "examples" / "box-network.toml"


def test_the_example_box_file_plans_to_the_golden_networkd_files() -> None:
    got = network.planned(box_network.load_text(BOX_EXAMPLE.read_text()))
    if os.environ.get("UPDATE_GOLDEN"):
        GOLDEN.mkdir(parents=True, exist_ok=True)
        for name, text in got.items():
            (GOLDEN / name).write_text(text)
        pytest.skip("golden files rewritten; review the diff")
    want = {p.name: p.read_text() for p in sorted(GOLDEN.iterdir())}
    assert sorted(got) == sorted(want)
    for name, text in got.items():
        assert text == want[name], f"{name} differs from its golden file"
