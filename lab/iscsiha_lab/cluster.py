"""Form the lab's pair the way an admin forms a customer's: `iscsiha cluster init` on the
first box, `iscsiha cluster join` on the second, both as flashed. The only lab-specific
input is the tiebreaker signer (signer.py: the lab's qnetd CA through the share folder
instead of SSH to the qnetd host). Also: the checks that say the pair is formed.
"""

from __future__ import annotations

import re
import time
from collections.abc import Callable
from typing import Protocol

from iscsiha.commands.bootstrap_params import cli_name
from iscsiha.errors import IscsihaError, Secret
from iscsiha_lab import box_networks, signer
from iscsiha_lab.guest import GuestChannel, GuestResult
from iscsiha_lab.topology import NetworkRole, Topology

# `cluster init` prints the token alone on an indented line.
TOKEN = re.compile(r"^\s+(ISJ1-[A-Z2-7-]+)\s*$", re.MULTILINE)
BOOTSTRAP_TIMEOUT = 900.0
# The join of a box that replaces a dead one waits for its volumes to resync too.
REPLACE_TIMEOUT = 1800.0
# ipmi_sim (openipmi 2.0.33) has no SHA-256 suites: ipmitool tries 17 first and each
# call then waits 14 s for its retries (measured: 14.7 s against 0.9 s for a status
# call, three calls per fence). Suite 3 at once, for the product's fence devices too.
BMC_CIPHER = "3"
Param = tuple[str, str | list[str]]


class LabAccess(Protocol):
    topology: Topology

    def channel(self, node: str) -> GuestChannel: ...

    def bmc_password(self) -> Secret: ...


def init_params(topology: Topology) -> list[Param]:
    """What `cluster init` is given for the lab, by parameter name, in the order the
    console's `/cluster init` and the CLI share (secrets excluded: they go on stdin)."""
    first, peer = topology.appliances
    storage = [n.name for n in topology.network_with(NetworkRole.STORAGE)]
    networks: list[Param] = []
    for net in topology.networks:
        if net.role is not NetworkRole.MANAGEMENT:
            here, there = topology.address(first, net.name), topology.address(peer, net.name)
            networks.append((net.name, f"{net.subnet},{here},{there}"))
    return [
        ("name", topology.cluster_name), ("peer", peer.name), *networks,
        # The storage networks have no switch to ping in the lab; the initiators stand in
        # (each address goes to the network it lies in).
        ("ping", [str(topology.address(n, net)) for net in storage for n in topology.initiators
                  if net in n.networks]),
        ("bmc", str(topology.bmc_address(first))), ("peer_bmc", str(topology.bmc_address(peer))),
        ("bmc_user", topology.bmc_user),
        ("bmc_cipher", BMC_CIPHER),
        ("tiebreaker", str(topology.qnetd_address)), ("tiebreaker_signer", signer.PROGRAM),
    ]


def init_argv(topology: Topology) -> list[str]:
    """`iscsiha cluster init` for the lab's first box; the BMC passwords go on stdin."""
    argv = ["iscsiha", "cluster", "init"]
    for name, value in init_params(topology):
        for one in value if isinstance(value, list) else [value]:
            argv += [cli_name(name), one]
    return argv


def _ran(result: GuestResult, what: str) -> GuestResult:
    if result.returncode != 0:
        raise IscsihaError.single(
            "bootstrap-failed", "command", f"{result.node}: {what}", "exit code 0",
            f"exit {result.returncode}: {(result.err + result.out).strip()[-2000:]}")
    return result


def form(lab: LabAccess, progress: Callable[[str], None]) -> None:
    """Each box's addresses, then `cluster init` on the first box and `cluster join` with
    its token on the second."""
    box_networks.configure(lab.channel, lab.topology, progress)
    first, peer = (n.name for n in lab.topology.appliances)
    password = lab.bmc_password()  # both lab BMCs share one: this box's, then the peer's
    progress(f"cluster: iscsiha cluster init on {first}")
    init = _ran(lab.channel(first).run(init_argv(lab.topology), input=f"{password}\n" * 2,
                                       timeout=BOOTSTRAP_TIMEOUT), "iscsiha cluster init")
    found = TOKEN.search(init.out)
    if found is None:
        raise IscsihaError.single("no-join-token", "command", f"{first}: iscsiha cluster init",
                                  "the token (ISJ1-...) alone on a line", init.out[-500:])
    progress(f"cluster: iscsiha cluster join on {peer}")
    _ran(lab.channel(peer).run(["iscsiha", "cluster", "join", "-"],
                               input=f"{found.group(1)}\n", timeout=BOOTSTRAP_TIMEOUT),
         "iscsiha cluster join")


def replace(lab: LabAccess, dead: str, progress: Callable[[str], None]) -> GuestResult:
    """A new box in ``dead``'s place, the way an admin puts one there: its addresses, then
    `cluster replace` on the box that stays and `cluster join` with its token on the new
    one (which rebuilds its volumes and shows the resync). The join's result."""
    box_networks.configure(lab.channel, lab.topology, progress, only=dead)
    (stays,) = (n.name for n in lab.topology.appliances if n.name != dead)
    progress(f"cluster: iscsiha cluster replace {dead} on {stays}")
    issued = _ran(lab.channel(stays).run(["iscsiha", "cluster", "replace", dead],
                                         timeout=BOOTSTRAP_TIMEOUT), "iscsiha cluster replace")
    found = TOKEN.search(issued.out)
    if found is None:
        raise IscsihaError.single("no-join-token", "command",
                                  f"{stays}: iscsiha cluster replace {dead}",
                                  "the token (ISJ1-...) alone on a line", issued.out[-500:])
    progress(f"cluster: iscsiha cluster join on the new {dead}")
    return _ran(lab.channel(dead).run(["iscsiha", "cluster", "join", "-"],
                                      input=f"{found.group(1)}\n", timeout=REPLACE_TIMEOUT),
                "iscsiha cluster join")


def quorum_status(channel: GuestChannel) -> GuestResult:
    return channel.run(["corosync-quorumtool", "-s"], timeout=30)


def is_quorate_with_qdevice(text: str) -> bool:
    quorate = re.search(r"^Quorate:\s+Yes", text, re.MULTILINE) is not None
    qdevice = re.search(r"^\s*0\s+1\s+Qdevice", text, re.MULTILINE) is not None
    return quorate and qdevice


def pacemaker_members(channel: GuestChannel) -> tuple[set[str], str]:
    """The nodes pacemaker has online, as this node sees it, and the raw output.

    crm_mon (pacemaker-cli-utils) shows them once a DC is elected; an image
    without it falls back to `crm_node -p`, the controller's partition members,
    from the pacemaker package itself (an earlier, weaker sign).
    """
    mon = channel.run(["crm_mon", "-1"], timeout=30)
    if mon.returncode != 127:
        online = re.search(r"Online:\s*\[([^\]]*)\]", mon.out)
        return (set(online.group(1).split()) if online else set()), mon.out + mon.err
    partition = channel.run(["crm_node", "-p"], timeout=30)
    return set(partition.out.split()), partition.out + partition.err


def wait_formed(lab: LabAccess, timeout: float, progress: Callable[[str], None]) -> float:
    """Wait until every appliance node is quorate with the qdevice vote and pacemaker has both."""
    started = time.monotonic()
    deadline = started + timeout
    names = [n.name for n in lab.topology.appliances]
    last = ""
    while time.monotonic() < deadline:
        formed = True
        for name in names:
            ch = lab.channel(name)
            quorum = quorum_status(ch)
            members, raw = pacemaker_members(ch)
            if not is_quorate_with_qdevice(quorum.out) or members != set(names):
                formed = False
                last = (f"{name}: corosync-quorumtool -s: {quorum.out.strip()!r}; "
                        f"pacemaker: {raw.strip()!r}")
                break
        if formed:
            seconds = time.monotonic() - started
            progress(f"cluster: formed, quorate through qnetd ({seconds:.1f} s)")
            return seconds
        time.sleep(2.0)
    raise IscsihaError.single(
        "cluster-not-formed", "cluster", lab.topology.cluster_name,
        f"both nodes online and quorate with the qdevice vote within {timeout:.0f} s",
        last[-1500:])
