"""Each appliance's cluster, replication and storage addresses, set the way an admin sets
them on a box as flashed: `iscsiha network set/apply/confirm` (or the console's
/box/networks). The lab's agent sets only the management link.
"""

from __future__ import annotations

from collections.abc import Callable

from iscsiha.errors import IscsihaError
from iscsiha_lab.guest import GuestChannel
from iscsiha_lab.topology import LabNode, Topology

TIMEOUT = 120.0


def cli_argvs(topology: Topology, node: LabNode) -> list[list[str]]:
    """`iscsiha network set` for each of the box's product links, then apply."""
    return [*(["iscsiha", "network", "set", i.network.name, "--link", i.ifname,
               "--address", i.cidr] for i in topology.product_interfaces(node)),
            ["iscsiha", "network", "apply"]]


def console_lines(topology: Topology, node: LabNode) -> list[str]:
    """The same through the console, one line each."""
    return [*(f"/box/networks add name={i.network.name} link={i.ifname} address={i.cidr}"
              for i in topology.product_interfaces(node)),
            "/box/networks apply"]


def configure(channel: Callable[[str], GuestChannel], topology: Topology,
              progress: Callable[[str], None], only: str | None = None) -> None:
    """Set, apply and confirm (from a second call, as from a new session) on each box, or
    on the box named ``only``."""
    for node in topology.appliances:
        if only is not None and node.name != only:
            continue
        progress(f"networks: iscsiha network set/apply/confirm on {node.name}")
        for argv in [*cli_argvs(topology, node), ["iscsiha", "network", "confirm"]]:
            result = channel(node.name).run(argv, timeout=TIMEOUT)
            if result.returncode != 0 or "warning" in result.err:
                raise IscsihaError.single(
                    "network-setup-failed", "command", f"{node.name}: {' '.join(argv)}",
                    "exit code 0 and every address in place",
                    f"exit {result.returncode}: {(result.err + result.out).strip()[-1500:]}")
