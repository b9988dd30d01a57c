"""Our OCF agents on a real appliance box, outside Pacemaker's control.

resource-agents' ocf-tester runs each agent through its whole contract (meta-data,
validate-all, probe, start twice, monitor, stop twice); the port block is shown
to drop an initiator's SYN (a timeout, never a reset) until the target unblocks it.
"""

from __future__ import annotations

import pytest
from iscsiha_lab.lab import Lab

from iscsiha.model.identity import lun_identity

pytestmark = pytest.mark.lab
BOX = "san-a"
AGENTS = "/usr/lib/ocf/resource.d/iscsiha"
IQN = "iqn.2026-11.org.example.lab:ocf-tester"

CONNECT = """
import socket, sys
try:
    socket.create_connection((sys.argv[1], int(sys.argv[2])), timeout=2).close()
    print("connected")
except socket.timeout:
    print("timeout")
except OSError as exc:
    print(f"error {exc.errno}")
"""
UNBLOCK = ("from ipaddress import ip_address; import sys\n"
           "from iscsiha.executors.portblock import PortBlock\n"
           "from iscsiha.executors.runner import Runner\n"
           "PortBlock(Runner()).unblock(ip_address(sys.argv[1]), int(sys.argv[2]))\n")


def _tester(lab: Lab, name: str, agent: str, params: dict[str, str]) -> None:
    options = [w for k, v in params.items() for w in ("-o", f"{k}={v}")]
    result = lab.exec(BOX, ["ocf-tester", "-n", name, *options, f"{AGENTS}/{agent}"],
                      timeout=600)
    assert result.ok and "passed all tests" in result.out, result.out + result.err


def test_ocf_tester_passes_the_address_agent(lab: Lab) -> None:
    _tester(lab, "ocft-address", "address",
            {"ip": "10.99.30.151", "cidr_netmask": "24", "port": "3264"})


def test_ocf_tester_passes_the_target_agent(lab: Lab) -> None:
    lab.exec(BOX, ["lvcreate", "-q", "-y", "-L", "8M", "-n", "ocft", "data"]).check()
    try:
        serial = lun_identity(IQN, "ocft").serial
        _tester(lab, "ocft-target", "target", {
            "iqn": IQN, "portals": "10.99.30.11:3263", "luns": f"0:ocft:/dev/data/ocft:{serial}",
            "initiators": "iqn.2026-11.org.example.lab:someone"})
    finally:
        freed = lab.exec(BOX, ["lvremove", "-q", "-y", "data/ocft"])
    assert freed.ok, freed.err  # no backstore left holding the device


def test_ocf_tester_passes_the_discovery_agent(lab: Lab) -> None:
    # A throwaway secret: ocf-tester only takes parameters on its command line.
    _tester(lab, "ocft-discovery", "discovery",
            {"auth": "chap", "chap_user": "disc", "chap_secret": "ocf-tester-Sec01"})
    enforce = "/sys/kernel/config/target/iscsi/discovery_auth/enforce_discovery_auth"
    assert lab.exec(BOX, ["cat", enforce]).check().out.strip() == "0"  # stopped: open again


def test_address_start_drops_syns_until_unblocked_then_stop_cleans_up(lab: Lab) -> None:
    ip, port = "10.99.30.152", "3262"
    env = ["env", "OCF_ROOT=/usr/lib/ocf", f"OCF_RESKEY_ip={ip}", "OCF_RESKEY_cidr_netmask=24",
           f"OCF_RESKEY_port={port}"]
    initiator = lab.topology.initiators[0].name
    listener = ("import socket,time\ns=socket.socket()\n"
                f"s.bind(('0.0.0.0',{port}));s.listen(8);time.sleep(60)")
    lab.exec(BOX, ["sh", "-c", "python3 -c \"$0\" >/dev/null 2>&1 & "
                               "echo $! > /tmp/ocft-listener.pid", listener]).check()
    try:
        lab.exec(BOX, [*env, f"{AGENTS}/address", "start"]).check()
        blocked = lab.exec(initiator, ["python3", "-c", CONNECT, ip, port]).check().out.strip()
        lab.exec(BOX, ["python3", "-c", UNBLOCK, ip, port]).check()
        opened = lab.exec(initiator, ["python3", "-c", CONNECT, ip, port]).check().out.strip()
        lab.exec(BOX, [*env, f"{AGENTS}/address", "stop"]).check()
        after = lab.exec(BOX, ["sh", "-c", f"ip -br addr | grep -c '{ip}/' ; "
                                           "tc -j filter show dev vec4 ingress"]).out
    finally:
        lab.exec(BOX, ["sh", "-c", "kill $(cat /tmp/ocft-listener.pid)"])
    assert blocked == "timeout"  # dropped quietly: the initiator just retransmits
    assert opened == "connected"
    assert after.split()[0] == "0" and ip not in after


def test_address_start_announces_the_move_so_initiators_switch_at_once(lab: Lab) -> None:
    """A gratuitous ARP updates the initiator's neighbour entry without it asking: the
    initiator's next packet goes to the new box instead of the old MAC."""
    ip = "10.99.30.153"
    env = ["env", "OCF_ROOT=/usr/lib/ocf", f"OCF_RESKEY_ip={ip}", "OCF_RESKEY_cidr_netmask=24",
           "OCF_RESKEY_port=3261"]
    initiator = lab.topology.initiators[0].name
    old, new = "san-b", BOX

    def mac_of(box: str) -> str:
        script = (f"dev=$(ip -o addr show to {ip} | awk '{{print $2}}'); "
                  "cat /sys/class/net/$dev/address")
        return lab.exec(box, ["sh", "-c", script]).check().out.strip()

    def neighbour() -> str:
        return lab.exec(initiator, ["ip", "neigh", "show", ip]).check().out

    try:
        lab.exec(old, [*env, f"{AGENTS}/address", "start"]).check()
        lab.exec(initiator, ["ping", "-c", "1", "-W", "2", ip]).check()
        old_mac = mac_of(old)
        assert old_mac in neighbour()
        lab.exec(old, [*env, f"{AGENTS}/address", "stop"]).check()
        started = lab.exec(new, [*env, f"{AGENTS}/address", "start"]).check()
        new_mac = mac_of(new)
        lab.exec(initiator, ["sleep", "3"])  # arping sends 3 announcements, a second apart
        seen = neighbour()
    finally:
        for box in (old, new):
            lab.exec(box, [*env, f"{AGENTS}/address", "stop"])
    assert "not sent" not in started.err, started.err
    assert new_mac != old_mac and new_mac in seen, seen
