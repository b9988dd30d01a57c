"""The lab's networks: one bridge per network, one tap per node interface, all in the lab namespace.

These functions run inside the lab's own network namespace (the supervisor's,
made by `unshare --net`), so nothing here can touch the host's interfaces and
every address they add exists only there. The namespace has no name under
/run/netns: it lives exactly as long as the processes in it, so it cannot be
left behind.

Cutting a link detaches the node's tap from its bridge rather than setting it
down: frames from the guest then fall into an unconnected port and vanish
silently, as on a pulled cable, while the guest's own link state stays up (a
switch failure, not a NIC failure). Healing attaches it again.
"""

from __future__ import annotations

import json
from dataclasses import dataclass

from iscsiha.executors.runner import Runner
from iscsiha_lab.tools import IP
from iscsiha_lab.topology import Topology


@dataclass(frozen=True)
class TapState:
    tap: str
    bridge: str | None  # None: cut
    up: bool


def create_networks(runner: Runner, topology: Topology) -> None:
    ip = IP.path
    runner.run([ip, "link", "set", "lo", "up"])
    for network in topology.networks:
        # No STP and no forward delay: a healed port forwards at once.
        runner.run([ip, "link", "add", network.bridge, "type", "bridge",
                    "stp_state", "0", "forward_delay", "0"])
        runner.run([ip, "link", "set", network.bridge, "up"])
    mgmt = topology.management
    prefix = mgmt.subnet.prefixlen
    # The tiebreaker and the BMC simulators are processes in this namespace:
    # their addresses sit on the management bridge itself.
    host_addresses = [topology.qnetd_address,
                      *(topology.bmc_address(n) for n in topology.appliances)]
    for address in host_addresses:
        runner.run([ip, "address", "add", f"{address}/{prefix}", "dev", mgmt.bridge])
    for node in topology.nodes:
        for interface in topology.interfaces(node):
            runner.run([ip, "tuntap", "add", "dev", interface.tap, "mode", "tap"])
            runner.run([ip, "link", "set", interface.tap, "master", interface.network.bridge,
                        "up"])


def cut(runner: Runner, tap: str) -> None:
    runner.run([IP.path, "link", "set", "dev", tap, "nomaster"])


def heal(runner: Runner, tap: str, bridge: str) -> None:
    runner.run([IP.path, "link", "set", "dev", tap, "master", bridge, "up"])


def tap_states(runner: Runner) -> dict[str, TapState]:
    out = runner.run([IP.path, "-j", "link", "show", "type", "tun"]).stdout
    states = {}
    for link in json.loads(out or "[]"):
        name = str(link["ifname"])
        states[name] = TapState(name, link.get("master"), "UP" in link.get("flags", []))
    return states
