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

An appliance node boots from its boot disk (boot_disk.py) with the root and slot
words the boot loader's stand-in chose (boot_loader.py). A guest's own reboot must
go through that choice again, but UML reboots by re-executing itself in the same
process, argv unchanged (arch/um/os-Linux/main.c: ``execvp(new_argv[0], new_argv)``
after linux_main returns). So UML starts with argv[0] naming REBOOT_PROGRAM (bash's
``exec -a``; UML's early re-exec for ASLR goes through /proc/self/exe, not argv[0]):
a reboot executes that script, which exits with REBOOT_EXIT, and the supervisor
powers the node on again, choosing anew. A poweroff is UML exiting 0: the node stays off.
"""

from __future__ import annotations

import base64

from iscsiha_lab.paths import GUEST_INITIATOR_IMAGE, LabPaths
from iscsiha_lab.topology import LabNode, NodeRole, Topology

AGENT_UNIT = "iscsiha-lab-agent.service"
GUEST_SHARE_MOUNT = "/run/iscsiha-lab"  # the share folder inside the guest
UML_IN_RUNNER = "/usr/bin/linux.uml"
CHROOT = "/usr/sbin/chroot"
BASH_IN_RUNNER = "/bin/bash"  # Essential in Debian: in every runner root
# In the runner's /tmp (the supervisor's tmpfs); see the module's docstring.
REBOOT_PROGRAM = "/tmp/iscsiha-lab-reboot"
REBOOT_EXIT = 99  # no exit code UML itself uses (0, 1, or the guest's panic/halt path)
BOOT_DISK = "boot.img"  # an appliance node's disk file in its node folder


def reboot_program() -> str:
    return ("#!/bin/sh\n# UML executes this on a guest reboot: the lab supervisor boots "
            f"the node again.\nexit {REBOOT_EXIT}\n")


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


def uml_argv(topology: Topology, paths: LabPaths, node: LabNode, runner: str,
             boot_words: list[str] | None = None) -> list[str]:
    """chroot into the runner root and start its linux.uml with this node's disks and taps.

    ``boot_words``: an appliance node's root and slot (boot_loader.Boot.kernel_words),
    and any extra words for that boot.
    """
    node_dir = paths.node_dir(node.name)
    argv = [CHROOT, runner, BASH_IN_RUNNER, "-c", f'exec -a "$0" {UML_IN_RUNNER} "$@"',
            REBOOT_PROGRAM, f"mem={node.memory_mib}M"]
    if node.role is NodeRole.APPLIANCE:
        if not boot_words:
            raise ValueError(f"appliance node {node.name} needs the boot loader's root words")
        argv.append(f"ubd0={paths.guest_path(node_dir / BOOT_DISK)}")
        root_words = list(boot_words)
    else:
        argv.append(f"ubd0={paths.guest_path(node_dir / 'root.cow')},{GUEST_INITIATOR_IMAGE}")
        root_words = ["root=/dev/ubda"]
    if node.data_disk_mib:
        argv.append(f"ubd1={paths.guest_path(node_dir / 'data.img')}")
    argv += [
        *root_words, "rw",
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
