"""Our OCF agents: metadata from the installed scripts, and the target agent's logic.

The target agent runs here against a fake LIO and port block (pure logic: what it
asks for and in which order); the real LIO is exercised in the lab.
"""

from __future__ import annotations

import shutil
import sys
from collections.abc import Iterable
from ipaddress import ip_address
from pathlib import Path
from typing import Any

import pytest

from iscsiha.agents.ocf import AgentError, Rc, run
from iscsiha.agents.target import SPEC, TargetAgent
from iscsiha.executors.lio import Secrets, TargetState
from iscsiha.executors.runner import Runner
from iscsiha.executors.tcp_sessions import Connection
from iscsiha.plan.agent_params import LunParam, TargetParams
from tests.conftest import ROOT, skip_or_fail
from tests.unit.test_ocf import OCF_RNG

AGENTS = sorted(p.name for p in (ROOT / "ocf").iterdir())

PARAMS = {
    "iqn": "iqn.2026-11.com.example:san.vm",
    "portals": "10.30.0.100:3260",
    "luns": "0:vmstore:/dev/null:serial-a 1:db:/dev/zero:serial-b",
    "initiators": "iqn.1993-08.org.debian:01:hv1",
    "auth": "chap", "chap_user": "hv", "chap_secret": "hv-Secret-0001",
}


@pytest.mark.parametrize("agent", AGENTS)
def test_agent_script_metadata_is_valid_ocf(agent: str, tmp_path: Path) -> None:
    xmllint = shutil.which("xmllint")
    if xmllint is None or not OCF_RNG.exists():
        skip_or_fail("needs xmllint (libxml2-utils) and the OCF schema (resource-agents)")
        return
    meta = Runner().run([sys.executable, str(ROOT / "ocf" / agent), "meta-data"]).stdout
    (tmp_path / "meta.xml").write_text(meta)
    result = Runner().run([xmllint, "--noout", "--relaxng", str(OCF_RNG),
                           str(tmp_path / "meta.xml")], check=False)
    assert result.returncode == 0, result.stderr
    assert f'<resource-agent name="{agent}"' in meta


class FakeLio:
    def __init__(self) -> None:
        self.state: TargetState | None = None
        self.calls: list[str] = []

    def target_state(self, iqn: str) -> TargetState | None:
        return self.state

    def apply_target(self, spec: TargetParams, secrets: Secrets,
                     reservations: str | None = None) -> None:
        self.calls.append(f"apply {spec.iqn} secret={secrets.chap}"
                          + (f" reservations={reservations}" if reservations else ""))
        self.state = TargetState(True, frozenset((str(p.address), p.port) for p in spec.portals),
                                 {lun.number: lun.device for lun in spec.luns},
                                 frozenset(spec.initiators))

    def remove_target(self, iqn: str, luns: Iterable[LunParam]) -> bool:
        self.calls.append(f"remove {iqn} {[lun.volume for lun in luns]}")
        self.state = None
        return True


class FakePortBlock:
    def __init__(self, calls: list[str]) -> None:
        self.calls = calls
        self.blocked: set[str] = set()

    def block(self, address: Any, port: int, ifname: str, *, outgoing: bool = False) -> None:
        both = " both ways" if outgoing else ""
        self.calls.append(f"block {address}:{port} on {ifname}{both}")
        self.blocked.add(f"{address}:{port}")

    def unblock(self, address: Any, port: int) -> None:
        self.calls.append(f"unblock {address}:{port}")
        self.blocked.discard(f"{address}:{port}")

    def is_blocked(self, address: Any, port: int) -> bool:
        return f"{address}:{port}" in self.blocked


class FakeAddresses:
    """This box holds the portal address on vec4."""

    def __enter__(self) -> FakeAddresses:
        return self

    def __exit__(self, *exc: object) -> None:
        pass

    def holder(self, address: Any) -> str | None:
        return "vec4" if str(address) == "10.30.0.100" else None


class FakeHandover:
    def __init__(self, calls: list[str]) -> None:
        self.calls = calls

    def record(self, connections: list[Connection]) -> None:
        self.calls.append(f"hand over {' '.join(map(str, connections))}")

    def keep(self, connections: list[Connection]) -> None:
        self.calls.append(f"keep {' '.join(map(str, connections))}")

    def tickle(self, portals: list[tuple[Any, int]]) -> int:
        self.calls.append(f"tickle for {' '.join(f'{a}:{p}' for a, p in portals)}")
        return 0


class FakeStore:
    def __init__(self, calls: list[str]) -> None:
        self.calls = calls
        self.mounts: set[str] = set()

    def mounted(self, device: str) -> bool:
        return device in self.mounts

    def mount(self, device: str) -> str:
        self.calls.append(f"mount {device}")
        self.mounts.add(device)
        return f"/run/pr/{device[5:]}"

    def unmount(self, device: str) -> None:
        self.calls.append(f"unmount {device}")
        self.mounts.discard(device)


CONNECTION = Connection(ip_address("10.30.0.100"), 3260, ip_address("10.30.0.7"), 51000)


def _agent() -> tuple[TargetAgent, FakeLio, FakePortBlock]:
    lio = FakeLio()
    block = FakePortBlock(lio.calls)
    return TargetAgent(lio, block, FakeAddresses, FakeHandover(lio.calls),  # type: ignore[arg-type]
                       FakeStore(lio.calls), lambda portals: [CONNECTION]), lio, block  # type: ignore[arg-type]


def test_reservations_are_mounted_before_the_luns_and_unmounted_after_them() -> None:
    agent, lio, _ = _agent()
    params = {**PARAMS, "reservations": "/dev/null"}
    assert agent.start(params) == Rc.SUCCESS
    assert lio.calls[:2] == ["mount /dev/null",
                             "apply iqn.2026-11.com.example:san.vm secret=hv-Secret-0001 "
                             "reservations=/run/pr/null"]
    assert agent.monitor(params) == Rc.SUCCESS
    lio.calls.clear()
    assert agent.stop(params) == Rc.SUCCESS
    assert lio.calls.index("unmount /dev/null") > next(
        i for i, c in enumerate(lio.calls) if c.startswith("remove"))


def test_a_target_whose_reservations_store_is_gone_fails_its_monitor() -> None:
    agent, _, _ = _agent()
    params = {**PARAMS, "reservations": "/dev/null"}
    agent.start(params)
    agent._store.unmount("/dev/null")  # type: ignore[attr-defined]
    with pytest.raises(AgentError, match="reservations store /dev/null is not mounted"):
        agent.monitor(params)


def test_a_missing_reservations_device_fails_the_start_before_anything_changes() -> None:
    agent, lio, _ = _agent()
    with pytest.raises(AgentError, match=r"/dev/drbd999 \(the reservations\) is missing"):
        agent.start({**PARAMS, "reservations": "/dev/drbd999"})
    assert lio.calls == []


def test_start_applies_all_luns_then_unblocks_and_is_idempotent() -> None:
    agent, lio, _ = _agent()
    assert agent.start(PARAMS) == Rc.SUCCESS
    assert lio.calls == ["apply iqn.2026-11.com.example:san.vm secret=hv-Secret-0001",
                         "unblock 10.30.0.100:3260",
                         # Only once initiators can log in: a reset before would send
                         # them into their reconnect timers.
                         "tickle for 10.30.0.100:3260"]
    assert agent.start(PARAMS) == Rc.SUCCESS
    assert lio.calls[3:] == ["unblock 10.30.0.100:3260",
                             "tickle for 10.30.0.100:3260"]  # nothing re-applied


def test_stop_hands_connections_over_and_blocks_both_ways_before_removing_the_target() -> None:
    agent, lio, _ = _agent()
    agent.start(PARAMS)
    lio.calls.clear()
    assert agent.stop(PARAMS) == Rc.SUCCESS
    assert lio.calls == ["hand over 10.30.0.100:3260=10.30.0.7:51000",
                         "block 10.30.0.100:3260 on vec4 both ways",
                         "remove iqn.2026-11.com.example:san.vm ['vmstore', 'db']"]
    assert agent.stop(PARAMS) == Rc.SUCCESS  # stopping a stopped target succeeds


def test_monitor_reports_absence_drift_and_a_blocked_port() -> None:
    agent, lio, block = _agent()
    assert agent.monitor(PARAMS) == Rc.NOT_RUNNING
    agent.start(PARAMS)
    assert agent.monitor(PARAMS) == Rc.SUCCESS
    # A running target keeps the next box's list of its connections current.
    assert lio.calls[-1] == "keep 10.30.0.100:3260=10.30.0.7:51000"
    block.block("10.30.0.100", 3260, "vec4")
    rc = run(lambda: agent, SPEC, ["target", "monitor"],
             {f"OCF_RESKEY_{k}": v for k, v in PARAMS.items()} | {
                 "OCF_RESKEY_CRM_meta_interval": "10000"})
    assert rc == Rc.ERR_GENERIC
    block.unblock("10.30.0.100", 3260)
    assert lio.state is not None
    lio.state = TargetState(True, lio.state.portals, {0: "/dev/null"}, lio.state.acls)
    with pytest.raises(AgentError, match="LUNs"):
        agent.monitor(PARAMS)


def test_start_refuses_when_a_drbd_device_is_missing() -> None:
    agent, lio, _ = _agent()
    params = dict(PARAMS, luns="0:vmstore:/dev/drbd4242:serial-a")
    with pytest.raises(AgentError, match="is DRBD promoted here"):
        agent.start(params)
    assert lio.calls == []


def test_bad_parameters_are_err_configured_and_name_the_value() -> None:
    agent, _, _ = _agent()
    env = {f"OCF_RESKEY_{k}": v for k, v in PARAMS.items()} | {"OCF_RESKEY_iqn": "iqn.x"}
    assert run(lambda: agent, SPEC, ["target", "validate-all"], env) == Rc.ERR_CONFIGURED
