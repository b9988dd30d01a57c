"""The address agent's parameters: a target's portals, one per storage network."""

from __future__ import annotations

from ipaddress import ip_address

import pytest

from iscsiha.agents.address import _parse
from iscsiha.agents.ocf import AgentError, Rc


def test_one_portal_reads_as_before() -> None:
    assert _parse({"ip": "10.30.0.100", "cidr_netmask": "24", "port": "3260"}) == [
        (ip_address("10.30.0.100"), 24, 3260)]


def test_several_portals_share_one_prefix_and_port_or_give_each() -> None:
    shared = _parse({"ip": "10.30.0.100 10.31.0.100", "cidr_netmask": "24"})
    assert shared == [(ip_address("10.30.0.100"), 24, 3260), (ip_address("10.31.0.100"), 24, 3260)]
    each = _parse({"ip": "10.30.0.100 fd00::100", "cidr_netmask": "24 64", "port": "3260 3261"})
    assert each == [(ip_address("10.30.0.100"), 24, 3260), (ip_address("fd00::100"), 64, 3261)]


@pytest.mark.parametrize(("params", "named"), [
    ({"ip": "", "cidr_netmask": "24"}, "ip=''"),
    ({"ip": " ".join(f"10.30.0.{i}" for i in range(1, 10)), "cidr_netmask": "24"}, "1 to 8"),
    ({"ip": "10.30.0.100 10.30.0.100", "cidr_netmask": "24"}, "appears twice"),
    ({"ip": "10.30.0.100 nonsense", "cidr_netmask": "24"}, "ip='nonsense'"),
    ({"ip": "10.30.0.100 10.31.0.100", "cidr_netmask": "24 24 24"}, "one per address (2)"),
    ({"ip": "10.30.0.100 fd00::1", "cidr_netmask": "24 129"}, "allowed 1 to 128 for fd00::1"),
    ({"ip": "10.30.0.100 10.31.0.100", "cidr_netmask": "24 33"}, "allowed 1 to 32"),
    ({"ip": "10.30.0.100", "cidr_netmask": "24", "port": "0"}, "port='0'"),
])
def test_bad_portals_are_refused_naming_the_value(params: dict[str, str], named: str) -> None:
    with pytest.raises(AgentError) as caught:
        _parse(params)
    assert caught.value.rc is Rc.ERR_CONFIGURED and named in str(caught.value)
