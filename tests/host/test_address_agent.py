"""The address agent and the port block on the host kernel, in throwaway namespaces.

A listener on the floating address inside the 'box' namespace; the 'client'
namespace connects. Blocked means the SYN is dropped (a timeout, never a reset).
"""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Iterator
from ipaddress import ip_address
from pathlib import Path

import pytest

from iscsiha.agents.address import AddressAgent
from iscsiha.agents.ocf import AgentError, Rc
from iscsiha.executors.addresses import Addresses
from iscsiha.executors.portblock import PortBlock
from tests.host.netns import IP, NetnsRunner, storage_pair

pytestmark = pytest.mark.host
FLOATING = "10.99.30.100"
PARAMS = {"ip": FLOATING, "cidr_netmask": "24", "port": "3260"}

CONNECT = """
import socket, sys
try:
    socket.create_connection((sys.argv[1], 3260), timeout=1.5).close()
    print("connected")
except socket.timeout:
    print("timeout")
except OSError as exc:
    print(f"error {exc.errno}")
"""


@pytest.fixture
def pair(tmp_path: Path) -> Iterator[tuple[str, str, AddressAgent, PortBlock]]:
    with storage_pair() as (box, client):
        runner = NetnsRunner(box)
        block = PortBlock(runner, lock_path=str(tmp_path / "portblock.lock"))
        agent = AddressAgent(lambda: Addresses(box), block, runner)
        yield box, client, agent, block


def _connect(client: str) -> str:
    out = subprocess.run([IP, "netns", "exec", client, sys.executable, "-c", CONNECT, FLOATING],
                         capture_output=True, text=True, timeout=10, check=True)
    return out.stdout.strip()


def _listen(box: str) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [IP, "netns", "exec", box, sys.executable, "-c",
         "import socket,time\ns=socket.socket();"
         "s.setsockopt(socket.SOL_SOCKET,socket.SO_REUSEADDR,1)\n"
         "s.bind(('0.0.0.0',3260));s.listen(8);time.sleep(30)"],
        text=True)


def test_start_brings_the_address_up_blocked_until_unblocked(
        pair: tuple[str, str, AddressAgent, PortBlock]) -> None:
    box, client, agent, block = pair
    listener = _listen(box)
    try:
        assert agent.monitor(PARAMS) == Rc.NOT_RUNNING
        assert agent.start(PARAMS) == Rc.SUCCESS
        assert agent.monitor(PARAMS) == Rc.SUCCESS
        assert block.is_blocked(ip_address(FLOATING), 3260)
        assert _connect(client) == "timeout"  # dropped quietly, no reset
        block.unblock(ip_address(FLOATING), 3260)  # what the target agent does when ready
        assert _connect(client) == "connected"
        assert agent.start(PARAMS) == Rc.SUCCESS  # a second start converges
    finally:
        listener.kill()
        listener.wait()


def test_stop_removes_address_and_block_and_is_idempotent(
        pair: tuple[str, str, AddressAgent, PortBlock]) -> None:
    _, _, agent, block = pair
    agent.start(PARAMS)
    assert agent.stop(PARAMS) == Rc.SUCCESS
    assert agent.monitor(PARAMS) == Rc.NOT_RUNNING
    assert not block.is_blocked(ip_address(FLOATING), 3260)
    assert agent.stop(PARAMS) == Rc.SUCCESS


def test_block_table_is_made_once_however_often_blocked(
        pair: tuple[str, str, AddressAgent, PortBlock]) -> None:
    box, _, _, block = pair
    for port in (3260, 3261, 3260):
        block.block(ip_address(FLOATING), port)
    rules = NetnsRunner(box).run(["/usr/sbin/nft", "list", "chain", "inet", "iscsiha",
                                  "input"]).stdout
    assert rules.count("@blocked4 drop") == 1


def test_start_on_a_box_without_the_storage_network_is_err_installed(
        pair: tuple[str, str, AddressAgent, PortBlock]) -> None:
    _, _, agent, _ = pair
    with pytest.raises(AgentError) as info:
        agent.start({"ip": "10.99.77.5", "cidr_netmask": "24", "port": "3260"})
    assert info.value.rc == Rc.ERR_INSTALLED
