"""The address agent on the host kernel, in throwaway namespaces.

Addresses are real (netlink in the 'box' namespace). The port block is recorded
here: the host kernel has no tc actions, so the real block (a dropped SYN, never
a reset) is proven in the lab (lab/lab_tests/scenarios/test_agents_in_lab.py).
"""

from __future__ import annotations

from collections.abc import Iterator
from ipaddress import ip_address

import pytest

from iscsiha.agents.address import AddressAgent
from iscsiha.agents.ocf import AgentError, Rc
from iscsiha.executors.addresses import Addresses
from iscsiha.model.types import IPAddress
from tests.host.netns import NetnsRunner, storage_pair

pytestmark = pytest.mark.host
FLOATING = "10.99.30.100"
PARAMS = {"ip": FLOATING, "cidr_netmask": "24", "port": "3260"}


class RecordingPortBlock:
    def __init__(self) -> None:
        self.blocked: dict[tuple[str, int], str] = {}

    def block(self, address: IPAddress, port: int, ifname: str) -> None:
        self.blocked[(str(address), port)] = ifname

    def unblock(self, address: IPAddress, port: int) -> None:
        self.blocked.pop((str(address), port), None)

    def is_blocked(self, address: IPAddress, port: int) -> bool:
        return (str(address), port) in self.blocked


@pytest.fixture
def pair() -> Iterator[tuple[str, AddressAgent, RecordingPortBlock]]:
    with storage_pair() as (box, _client):
        block = RecordingPortBlock()
        agent = AddressAgent(lambda: Addresses(box), block,  # type: ignore[arg-type]
                             NetnsRunner(box))
        yield box, agent, block


def test_start_blocks_the_port_on_the_storage_interface_then_adds_the_address(
        pair: tuple[str, AddressAgent, RecordingPortBlock]) -> None:
    box, agent, block = pair
    assert agent.monitor(PARAMS) == Rc.NOT_RUNNING
    assert agent.start(PARAMS) == Rc.SUCCESS
    assert agent.monitor(PARAMS) == Rc.SUCCESS
    with Addresses(box) as addrs:
        holder = addrs.holder(ip_address(FLOATING))
    assert holder is not None
    assert block.blocked == {(FLOATING, 3260): holder}
    assert agent.start(PARAMS) == Rc.SUCCESS  # a second start converges


def test_stop_removes_address_and_block_and_is_idempotent(
        pair: tuple[str, AddressAgent, RecordingPortBlock]) -> None:
    _, agent, block = pair
    agent.start(PARAMS)
    assert agent.stop(PARAMS) == Rc.SUCCESS
    assert agent.monitor(PARAMS) == Rc.NOT_RUNNING
    assert not block.is_blocked(ip_address(FLOATING), 3260)
    assert agent.stop(PARAMS) == Rc.SUCCESS


def test_start_on_a_box_without_the_storage_network_is_err_installed(
        pair: tuple[str, AddressAgent, RecordingPortBlock]) -> None:
    _, agent, _ = pair
    with pytest.raises(AgentError) as info:
        agent.start({"ip": "10.99.77.5", "cidr_netmask": "24", "port": "3260"})
    assert info.value.rc == Rc.ERR_INSTALLED
