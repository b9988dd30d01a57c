"""Handing a target's connections to the next box: the kernel's connection table, the
attribute's codec (hostile values), the attrd and tickle_tcp calls, and the port block
in both directions (each against a fake runner; the lab runs the real ones)."""

from __future__ import annotations

import json
import os
from ipaddress import ip_address
from pathlib import Path
from typing import Any

import pytest

from iscsiha.executors.handover import (
    ATTRD_UPDATER,
    MAX_CONNECTIONS,
    TICKLE_TCP,
    Handover,
    attribute,
    decode,
    encode,
    tickle_lines,
)
from iscsiha.executors.portblock import PortBlock
from iscsiha.executors.runner import CommandResult
from iscsiha.executors.tcp_sessions import Connection, established, parse

PORTAL = (ip_address("10.30.0.100"), 3260)
HEADER = "  sl  local_address rem_address   st tx_queue rx_queue tr tm->when retrnsmt   uid\n"
# 10.30.0.100:3260 <- 10.30.0.7:51000, established; the same portal listening; another port.
TCP = HEADER + (
    "   0: 64001E0A:0CBC 07001E0A:C738 01 00000000:00000000 00:00000000 00000000     0\n"
    "   1: 64001E0A:0CBC 00000000:0000 0A 00000000:00000000 00:00000000 00000000     0\n"
    "   2: 64001E0A:0016 07001E0A:C739 01 00000000:00000000 00:00000000 00000000     0\n")
TCP6 = HEADER + (  # [::1]:3260 <- [::1]:40000
    "   0: 00000000000000000000000001000000:0CBC 00000000000000000000000001000000:9C40 01 0\n")


def _connection(local: str, lport: int, remote: str, rport: int) -> Connection:
    return Connection(ip_address(local), lport, ip_address(remote), rport)


def test_the_kernel_s_tables_give_the_established_connections_to_a_portal() -> None:
    tables = {"/proc/net/tcp": TCP, "/proc/net/tcp6": TCP6}
    assert established([PORTAL], tables.__getitem__) == [
        _connection("10.30.0.100", 3260, "10.30.0.7", 51000)]
    assert established([(ip_address("::1"), 3260)], tables.__getitem__) == [
        _connection("::1", 3260, "::1", 40000)]


@pytest.mark.parametrize("line", [
    "", "garbage", "0: 64001E0A:0CBC 07001E0A:C738",  # too short
    "0: 64001E0A:0CBC 07001E0A:ZZZZ 01 0",  # not hex
    "0: 64001E0A0:0CBC 07001E0A:C738 01 0",  # 9 digits
    "0: 64001E0A:0000 07001E0A:C738 01 0",  # port 0
    "0: 64001E0A:FFFFF 07001E0A:C738 01 0",  # port over 65535
    "0: \u0666\u0664001E0A:0CBC 07001E0A:C738 01 0",  # non-ASCII digits
    "0: 64001E0A:0CBC 07001E0A:C738 06 0",  # TIME_WAIT
])
def test_a_line_the_kernel_would_not_write_is_skipped(line: str) -> None:
    assert parse(HEADER + line + "\n") == []


GOOD = "10.30.0.100:3260=10.30.0.7:51000"


@pytest.mark.parametrize("value", [
    "", "x", "=", "10.30.0.100:3260", "10.30.0.100:3260=",
    "10.30.0.100:3260=10.30.0.7",  # no port
    "10.30.0.100:3260=10.30.0.7:0", "10.30.0.100:3260=10.30.0.7:65536",
    "10.30.0.100:3261=10.30.0.7:51000",  # another portal's
    "10.30.0.100:3260=::1:51000",  # IPv6 without brackets
    "10.30.0.100:3260=[::1]:51000",  # families differ
    "10.30.0.100:3260=10.30.0.7:\u0665\u0661\u0660\u0660\u0660",  # non-ASCII digits
    "10.30.0.100:3260=10.30.0.7:51000=x",
    "10.30.0.100:3260=10.30.0.7:51000;rm",
])
def test_a_hostile_or_foreign_handed_over_entry_is_left_out(value: str) -> None:
    assert decode(value, [PORTAL]) == []
    # ... and costs the good entries beside it nothing.
    assert decode(f"{value} {GOOD}", [PORTAL]) == decode(GOOD, [PORTAL]) == [
        _connection("10.30.0.100", 3260, "10.30.0.7", 51000)]


def test_the_codec_round_trips_and_bounds_the_list() -> None:
    many = [_connection("10.30.0.100", 3260, "10.30.0.7", 1000 + i) for i in range(300)]
    value = encode(many)
    assert decode(value, [PORTAL]) == many[:MAX_CONNECTIONS]
    v6 = _connection("fd00::64", 3260, "fd00::7", 40000)
    assert decode(encode([v6]), [(ip_address("fd00::64"), 3260)]) == [v6]
    assert tickle_lines([v6]) == "fd00::64:3260 fd00::7:40000\n"  # tickle_tcp's format
    assert attribute("target-vm-lio") == "iscsiha-conns-target-vm-lio"
    for bad in (None, "", "a b", "x" * 80, "vm\n", "-x"):
        assert attribute(bad) is None


class FakeRunner:
    """Answers crm_node and attrd_updater as a two-box cluster would; records calls."""

    def __init__(self, attrd_rc: int = 0, value: str = "") -> None:
        self.calls: list[tuple[list[str], str | None]] = []
        self.attrd_rc = attrd_rc
        self.value = value

    def run(self, argv: list[str], *, input: str | None = None, check: bool = True,
            timeout: float | None = 60.0) -> CommandResult:
        self.calls.append((list(argv), input))
        out, rc = "", 0
        if argv[-1] == "-n":
            out = "san-a\n"
        elif argv[-1] == "-l":
            out = "1 san-a member\n2 san-b member\n"
        elif argv[0] == ATTRD_UPDATER:
            rc = self.attrd_rc
            if "-Q" in argv:
                out = f'name="{argv[2]}" host="san-a" value="{self.value}"\n'
        return CommandResult(tuple(argv), rc, out, "attrd is down" if rc else "", 0.0)

    def attrd(self) -> list[list[str]]:
        return [argv[1:] for argv, _ in self.calls if argv[0] == ATTRD_UPDATER]


def _handover(runner: FakeRunner, tmp_path: Path) -> Handover:
    return Handover(runner, "target-vm-lio", str(tmp_path))  # type: ignore[arg-type]


def test_stop_gives_the_connections_to_the_other_box_only_privately(tmp_path: Path) -> None:
    runner = FakeRunner()
    conn = _connection("10.30.0.100", 3260, "10.30.0.7", 51000)
    _handover(runner, tmp_path).record([conn])
    # Private: attrd keeps it, the CIB never sees it, no transition is recalculated.
    assert runner.attrd() == [["-n", "iscsiha-conns-target-vm-lio", "-U", str(conn),
                               "-N", "san-b", "-p"]]
    _handover(runner, tmp_path).record([])
    assert runner.attrd()[-1] == ["-n", "iscsiha-conns-target-vm-lio", "-D", "-N", "san-b"]


def test_monitor_records_only_a_changed_list_or_an_old_one(tmp_path: Path) -> None:
    runner = FakeRunner()
    conn = _connection("10.30.0.100", 3260, "10.30.0.7", 51000)
    handover = _handover(runner, tmp_path)
    handover.keep([conn])
    handover.keep([conn])
    assert len(runner.attrd()) == 1
    handover.keep([conn, _connection("10.30.0.100", 3260, "10.30.0.8", 51000)])
    assert len(runner.attrd()) == 2
    # A peer that rebooted lost its copy: after a while the same list goes again.
    state = tmp_path / "target-vm-lio"
    os.utime(state, (0, 0))
    handover.keep([conn, _connection("10.30.0.100", 3260, "10.30.0.8", 51000)])
    assert len(runner.attrd()) == 3


def test_start_tickles_what_was_handed_over_for_its_portals_then_forgets_it(
        tmp_path: Path) -> None:
    runner = FakeRunner(value="10.30.0.100:3260=10.30.0.7:51000 10.9.9.9:3260=10.9.9.8:1")
    assert _handover(runner, tmp_path).tickle([PORTAL]) == 1
    tickles = [(argv, data) for argv, data in runner.calls if argv[0] == TICKLE_TCP]
    assert tickles == [([TICKLE_TCP, "-n", "3"], "10.30.0.100:3260 10.30.0.7:51000\n")]
    assert runner.attrd()[-1] == ["-n", "iscsiha-conns-target-vm-lio", "-D"]  # this box's
    assert not [argv for argv, _ in runner.calls if argv[0].endswith("crm_node")]


def test_nothing_handed_over_tickles_nothing(tmp_path: Path) -> None:
    runner = FakeRunner(value="")
    assert _handover(runner, tmp_path).tickle([PORTAL]) == 0
    assert not [argv for argv, _ in runner.calls if argv[0] == TICKLE_TCP]


def test_attrd_failing_costs_the_handover_not_the_action(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    runner = FakeRunner(attrd_rc=1)
    _handover(runner, tmp_path).record([_connection("10.30.0.100", 3260, "10.30.0.7", 1)])
    assert _handover(runner, tmp_path).tickle([PORTAL]) == 0
    assert "not handed over" in capsys.readouterr().err
    assert not (tmp_path / "target-vm-lio").exists()  # monitor tries again


class TcRunner:
    """tc as the kernel answers it: qdiscs and flower filters per device and hook."""

    def __init__(self, qdisc: str | None) -> None:
        self.qdiscs = {"vec4": qdisc} if qdisc else {}
        self.filters: dict[tuple[str, str], list[dict[str, Any]]] = {}
        self.calls: list[list[str]] = []

    def run(self, argv: list[str], **_: Any) -> CommandResult:
        self.calls.append(list(argv))
        args = argv[1:]
        out = ""
        if args[:3] == ["-j", "qdisc", "show"]:
            devs = [args[4]] if len(args) > 3 else list(self.qdiscs)
            out = json.dumps([{"dev": d, "kind": self.qdiscs[d]} for d in devs
                              if d in self.qdiscs])
        elif args[:2] == ["qdisc", "add"]:
            self.qdiscs[args[3]] = args[4]
        elif args[:3] == ["-j", "filter", "show"]:
            out = json.dumps(self.filters.get((args[4], args[5]), []))
        elif args[:2] == ["filter", "add"]:
            ifname, hook, pref = args[3], args[4], int(args[6])
            words = args[args.index("flower") + 1:]
            keys = dict(zip(words[::2], words[1::2], strict=False))
            keys = {k: (int(v) if k.endswith("port") else v) for k, v in keys.items()}
            self.filters.setdefault((ifname, hook), []).append(
                {"kind": "flower", "pref": pref, "options": {"keys": keys}})
        elif args[:2] == ["filter", "del"]:
            key, pref = (args[3], args[4]), int(args[6])
            self.filters[key] = [f for f in self.filters[key] if f["pref"] != pref]
        return CommandResult(tuple(argv), 0, out, "", 0.0)


def _block(runner: TcRunner, tmp_path: Path) -> PortBlock:
    return PortBlock(runner, str(tmp_path / "lock"))  # type: ignore[arg-type]


def _hooks(runner: TcRunner) -> dict[str, list[Any]]:
    return {hook: [(f["options"]["keys"]) for f in fs]
            for (_, hook), fs in runner.filters.items() if fs}


def test_a_stopping_target_s_port_is_blocked_both_ways_and_unblocked_both_ways(
        tmp_path: Path) -> None:
    runner = TcRunner(None)
    block = _block(runner, tmp_path)
    block.block(PORTAL[0], 3260, "vec4", outgoing=True)
    block.block(PORTAL[0], 3260, "vec4", outgoing=True)  # idempotent
    assert runner.qdiscs == {"vec4": "clsact"}
    assert _hooks(runner) == {
        "ingress": [{"ip_proto": "tcp", "dst_ip": "10.30.0.100", "dst_port": 3260,
                     "action": "drop"}],
        "egress": [{"ip_proto": "tcp", "src_ip": "10.30.0.100", "src_port": 3260,
                    "action": "drop"}]}
    assert block.is_blocked(PORTAL[0], 3260)
    block.unblock(PORTAL[0], 3260)
    assert _hooks(runner) == {}
    assert not block.is_blocked(PORTAL[0], 3260)


def test_an_interface_with_an_older_version_s_ingress_qdisc_blocks_incoming_only(
        tmp_path: Path) -> None:
    runner = TcRunner("ingress")
    block = _block(runner, tmp_path)
    block.block(PORTAL[0], 3260, "vec4", outgoing=True)
    assert runner.qdiscs == {"vec4": "ingress"}  # not replaced under running filters
    assert list(_hooks(runner)) == ["ingress"]
    block.unblock(PORTAL[0], 3260)
    assert _hooks(runner) == {}


def test_an_incoming_only_block_leaves_what_the_box_sends(tmp_path: Path) -> None:
    runner = TcRunner(None)
    _block(runner, tmp_path).block(PORTAL[0], 3260, "vec4")
    assert list(_hooks(runner)) == ["ingress"]

