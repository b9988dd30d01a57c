"""The UML command line of a lab node, and the one lab-only unit its guest runs.

The lab never writes into the appliance image. Each guest learns what it needs
from its kernel command line, which UML passes through to /proc/cmdline:

* ``systemd.set_credential_binary=systemd.extra-unit.<unit>:<base64>`` hands
  systemd (v256 and later; trixie has 257) a whole unit file, which its debug
  generator installs at boot; ``systemd.wants=<unit>`` starts it. Nothing is
  injected into the root filesystem or its copy-on-write file.
* That unit mounts the node's share folder from the host (hostfs) and runs the
  agent kept there: the agent sets hostname, addresses and offloads, then serves
  the lab's exec channel over files in that folder. The channel needs no guest
  network, so it still works when the lab cuts a node's links.
"""

from __future__ import annotations

import base64

from iscsiha_lab.paths import GUEST_APPLIANCE_IMAGE, GUEST_INITIATOR_IMAGE, LabPaths
from iscsiha_lab.topology import LabNode, NodeRole, Topology

AGENT_UNIT = "iscsiha-lab-agent.service"
GUEST_SHARE_MOUNT = "/run/iscsiha-lab"  # the share folder inside the guest
UML_IN_RUNNER = "/usr/bin/linux.uml"
CHROOT = "/usr/sbin/chroot"


def agent_unit(hostfs_path: str) -> str:
    """The unit that brings the agent up, early and before anything uses the network."""
    mount = (
        f"mkdir -p {GUEST_SHARE_MOUNT} && "
        f"{{ mountpoint -q {GUEST_SHARE_MOUNT} || "
        f"mount -t hostfs none {GUEST_SHARE_MOUNT} -o hostfs={hostfs_path}; }}"
    )
    agent = f"/usr/bin/python3 {GUEST_SHARE_MOUNT}/agent.py"
    return "\n".join([
        "[Unit]",
        "Description=iscsiha lab agent: node identity, addresses and exec channel (lab only)",
        "DefaultDependencies=no",
        "After=local-fs.target",
        # Addresses must exist before corosync, pacemaker or iscsid bind to them.
        "Wants=network-pre.target",
        "Before=network-pre.target corosync.service pacemaker.service iscsid.service "
        "multi-user.target shutdown.target",
        "Conflicts=shutdown.target",
        "",
        "[Service]",
        f"ExecStartPre=/bin/sh -c '{mount}'",
        f"ExecStartPre={agent} setup",
        f"ExecStart={agent} serve",
        "Restart=always",
        "RestartSec=1",
        # Commands run through the channel may leave daemons behind (iperf3 -D):
        # an agent restart must not take them down.
        "KillMode=process",
        "",
    ])


def credential_words(hostfs_path: str) -> list[str]:
    unit = base64.b64encode(agent_unit(hostfs_path).encode()).decode()
    return [
        f"systemd.set_credential_binary=systemd.extra-unit.{AGENT_UNIT}:{unit}",
        f"systemd.wants={AGENT_UNIT}",
    ]


def mac_address(topology: Topology, node: LabNode, network: str) -> str:
    """Stable, locally administered MAC per (network, node): readable in tcpdump, same each boot."""
    index = [n.name for n in topology.networks].index(network)
    return f"02:99:00:00:{index:02x}:{node.host_octet:02x}"


def uml_argv(topology: Topology, paths: LabPaths, node: LabNode, runner: str) -> list[str]:
    """chroot into the runner root and start its linux.uml with this node's disks and taps."""
    node_dir = paths.node_dir(node.name)
    backing = GUEST_APPLIANCE_IMAGE if node.role is NodeRole.APPLIANCE else GUEST_INITIATOR_IMAGE
    argv = [
        CHROOT, runner, UML_IN_RUNNER,
        f"mem={node.memory_mib}M",
        f"ubd0={paths.guest_path(node_dir / 'root.cow')},{backing}",
    ]
    if node.data_disk_mib:
        argv.append(f"ubd1={paths.guest_path(node_dir / 'data.img')}")
    argv += [
        "root=/dev/ubda", "rw",
        # Console 0 (kernel and systemd messages) goes to the node's console.log;
        # console 1 gets a pseudo-terminal with a login prompt for `console NODE`.
        "con=null", "con0=null,fd:1", "con1=pts", "ssl=null",
        "uml_dir=/tmp", f"umid={node.name}",
    ]
    for index, interface in enumerate(topology.interfaces(node)):
        mac = mac_address(topology, node, interface.network.name)
        argv.append(f"vec{index}:transport=tap,ifname={interface.tap},mac={mac}")
    argv += credential_words(paths.guest_path(paths.share_dir(node.name)))
    # The lab's agent sets addresses itself; an image whose networkd manages no
    # vec* link would otherwise hold boot for two minutes in wait-online.
    argv.append("systemd.mask=systemd-networkd-wait-online.service")
    # The scenarios own DRBD's state: a verify the image's timer started at night
    # would show as VerifyS in the middle of a failover test (lab tests run
    # `iscsiha verify` themselves).
    argv.append("systemd.mask=iscsiha-verify.timer")
    argv.append(f"iscsiha_lab.node={node.name}")
    return argv
