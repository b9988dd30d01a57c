"""From two freshly booted boxes to a LUN the initiator may use, with nothing but
one-shot console commands (`iscsiha-console LINE`), as an admin would type them: each
box's addresses, the cluster, a volume and a target.

Used by `iscsiha-lab console-setup` (the README's demo) and the lab test of the
console. The lab must be up without a cluster (`iscsiha-lab up --no-cluster`).
The only lab-specific word is the tiebreaker signer: the lab's qnetd CA is reached
through the share folder (signer.py) instead of SSH to the qnetd host.

Secrets (BMC passwords, the join token, CHAP secrets) are never in a line: the line
says `NAME=-` and the console reads them from stdin, one line each, in the order the
command's help gives.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

from iscsiha.console.lines import SECRET_PARAMETERS
from iscsiha.errors import IscsihaError, Secret
from iscsiha_lab import box_networks, cluster
from iscsiha_lab.guest import GuestResult
from iscsiha_lab.initiator import MUTUAL, Initiator
from iscsiha_lab.lab import Lab
from iscsiha_lab.topology import Topology

CONSOLE = "iscsiha-console"
Say = Callable[[str], None]

VOLUME = "demo"
TARGET = "demo"
TARGET_IQN = "iqn.2026-11.org.example.lab:demo"
PORTAL = "10.99.30.100"
SIZE = "64M"


@dataclass(frozen=True)
class Typed:
    """One console command line, on one box, and what it printed."""

    node: str
    line: str
    out: str


def shown(line: str) -> str:
    """The line as the demo prints it: secrets and the token masked."""
    return " ".join(f"{w.split('=', 1)[0]}=***" if w.split("=", 1)[0] in SECRET_PARAMETERS
                    else w for w in line.split())


def console(lab: Lab, node: str, line: str, say: Say, timeout: float = 900.0,
            secrets: Sequence[Secret] = ()) -> Typed:
    """Run ``line`` in ``node``'s console, ``secrets`` on its stdin (one line each, for
    the line's `NAME=-`); a refused command raises with its reports."""
    fed = f"    (stdin: {len(secrets)} secret{'s' if len(secrets) != 1 else ''})" if secrets else ""
    say(f"{node}# {CONSOLE} {shown(line)}{fed}")
    stdin = "".join(f"{secret}\n" for secret in secrets) if secrets else None
    result: GuestResult = lab.exec(node, [CONSOLE, *line.split()], input=stdin,
                                   timeout=timeout)
    for text in (result.out, result.err):
        for out_line in text.strip().splitlines():
            say(f"    {out_line}")
    if result.returncode != 0:
        raise IscsihaError.single(
            "console-refused", "console", f"{node}: {shown(line)}", "exit code 0",
            f"exit {result.returncode}: {(result.err or result.out).strip()[-1500:]}")
    return Typed(node, line, result.out)


def networks(lab: Lab, say: Say) -> list[Typed]:
    """Each box's cluster, replication and storage addresses (/box/networks), applied as
    a trial and confirmed by a second console call, as from a new session."""
    typed = []
    for node in lab.topology.appliances:
        for line in [*box_networks.console_lines(lab.topology, node), "/box/networks confirm"]:
            typed.append(console(lab, node.name, line, say))
            if "warning" in typed[-1].out:
                raise IscsihaError.single("network-setup-failed", "console",
                                          f"{node.name}: {line}", "every address in place",
                                          typed[-1].out[-1500:])
    return typed


def init_line(topology: Topology) -> str:
    """`/cluster init` with what `iscsiha cluster init` is given (cluster.init_params)."""
    words = [f"{name}={','.join(value) if isinstance(value, list) else value}"
             for name, value in cluster.init_params(topology)]
    return " ".join(["/cluster", "init", *words, "bmc_password=-", "peer_bmc_password=-"])


def init(lab: Lab, say: Say) -> tuple[Typed, str]:
    """`/cluster init` on the first box; the join token it printed."""
    first = lab.topology.appliances[0].name
    # Both BMCs of the lab share one password: this box's, then the peer's.
    typed = console(lab, first, init_line(lab.topology), say,
                    secrets=(lab.bmc_password(), lab.bmc_password()))
    found = cluster.TOKEN.search(typed.out)
    if found is None:
        raise IscsihaError.single("no-join-token", "console", f"{first}: /cluster init",
                                  "the token (ISJ1-...) alone on a line", typed.out[-500:])
    return typed, found.group(1)


def join(lab: Lab, token: str, say: Say) -> Typed:
    """`/cluster join` on the second box."""
    return console(lab, lab.topology.appliances[1].name, "/cluster join token=-", say,
                   secrets=(Secret(token),))


def export_volume(lab: Lab, initiator_iqn: str, say: Say) -> list[Typed]:
    """One volume, a target with mutual CHAP exporting it to the initiator."""
    first = lab.topology.appliances[0].name
    auth = " ".join(f"{k}={'-' if k in SECRET_PARAMETERS else v}" for k, v in MUTUAL.items())
    # `set auth` reads secret's line, then mutual_secret's.
    chap = (Secret(MUTUAL["secret"]), Secret(MUTUAL["mutual_secret"]))
    return [
        console(lab, first, f"/volumes create name={VOLUME} size={SIZE}", say),
        console(lab, first, f"/targets create name={TARGET} portal={PORTAL} "
                            f"preferred_node={first} volume={VOLUME} "
                            f"initiator={initiator_iqn} iqn={TARGET_IQN}", say),
        # confirm=yes: the target is already running, and initiators that logged in
        # without CHAP would lose it; the console asks first unless told.
        console(lab, first, f"/targets/{TARGET}/auth set auth {auth} confirm=yes", say,
                secrets=chap),
    ]


def setup(lab: Lab, say: Say) -> list[Typed]:
    """Everything from fresh boxes to an exported LUN; the lines typed, in order."""
    lab.require_running()
    addresses = networks(lab, say)
    first, token = init(lab, say)
    return [*addresses, first, join(lab, token, say),
            *export_volume(lab, Initiator(lab).iqn, say)]
