"""The address executor against the host kernel, inside a namespace this test creates."""

from __future__ import annotations

import os
import shutil
import subprocess
import uuid
from collections.abc import Iterator
from ipaddress import ip_address, ip_network

import pytest

from iscsiha.errors import IscsihaError
from iscsiha.executors.addresses import Addresses
from tests.conftest import skip_or_fail

pytestmark = pytest.mark.host
IP = "/usr/sbin/ip"


@pytest.fixture
def netns() -> Iterator[str]:
    if os.geteuid() != 0 or shutil.which("ip") is None:
        skip_or_fail("needs root and iproute2 to create a network namespace")
    name = f"iscsiha-test-{uuid.uuid4().hex[:8]}"
    subprocess.run([IP, "netns", "add", name], check=True)
    try:
        run = ["/usr/sbin/ip", "-n", name]
        subprocess.run([*run, "link", "add", "stor0", "type", "veth", "peer", "name", "peer0"],
                       check=True)
        subprocess.run([*run, "link", "set", "stor0", "up"], check=True)
        subprocess.run([*run, "addr", "add", "10.99.30.11/24", "dev", "stor0"], check=True)
        yield name
    finally:
        subprocess.run([IP, "netns", "delete", name], check=True)


def test_add_is_idempotent_and_remove_cleans_up(netns: str) -> None:
    floating = ip_address("10.99.30.100")
    with Addresses(netns) as addrs:
        ifname = addrs.interface_in(ip_network("10.99.30.0/24"))
        assert ifname == "stor0"
        assert addrs.add(floating, 24, ifname) is True
        assert addrs.add(floating, 24, ifname) is False
        assert addrs.holder(floating) == "stor0"
        assert addrs.remove(floating, 24, ifname) is True
        assert addrs.remove(floating, 24, ifname) is False
        assert addrs.holder(floating) is None


def test_unknown_network_and_interface_are_named(netns: str) -> None:
    with Addresses(netns) as addrs:
        with pytest.raises(IscsihaError) as info:
            addrs.interface_in(ip_network("10.99.31.0/24"))
        assert info.value.reports[0].value == "10.99.31.0/24"
        with pytest.raises(IscsihaError) as info:
            addrs.add(ip_address("10.99.30.100"), 24, "nosuch0")
        assert info.value.reports[0].value == "nosuch0"
