"""`iscsiha-firewall`: load this box's packet filter (iscsiha-firewall.service runs it).

The desired state (/etc/iscsiha/desired.toml) gives the cluster's policy for this
box (plan/firewall.py); without one, the box has not joined a cluster yet and gets
the base policy (SSH, the join listener, ICMP, DHCP). A desired state that cannot
be read or does not name this box also gets the base policy, and the unit fails so
`systemctl --failed` shows it: the box stays reachable over SSH to be fixed.

A kernel without nf_tables (the lab's user-mode Linux) cannot hold any filter.
That must not stop the boot, so it exits 0, but says at critical priority that
the box runs without a packet filter.
"""

from __future__ import annotations

import argparse
import os
import socket
import sys
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from iscsiha.commands.cluster_env import RunsCommands
from iscsiha.commands.node_steps import DESIRED_PATH
from iscsiha.errors import IscsihaError
from iscsiha.executors.runner import CommandResult, Runner
from iscsiha.model.load import load_text
from iscsiha.plan import firewall

NFT = "/usr/sbin/nft"
RULESET_PATH = "/run/iscsiha/firewall.nft"  # what was loaded last, for the admin to read
# A table in the inet family and nothing in it: what any kernel with nf_tables
# accepts. If even this fails, the kernel has no (usable) nf_tables.
PROBE = "add table inet iscsiha_probe\ndelete table inet iscsiha_probe\n"
# Journal priorities (sd-daemon(3)): a line starting <N> is logged at priority N.
CRIT, ERR, INFO = "<2>", "<3>", "<6>"


@dataclass
class FirewallEnv:
    runner: RunsCommands
    desired_path: str = DESIRED_PATH
    ruleset_path: str = RULESET_PATH
    hostname: Callable[[], str] = socket.gethostname
    log: Callable[[str], None] = field(default=lambda line: print(line, flush=True))


def choose(env: FirewallEnv) -> tuple[str, str, IscsihaError | None]:
    """The ruleset for this box, what it is (for the log), and why it fell back if it did."""
    path = Path(env.desired_path)
    if not path.exists():
        return firewall.base_ruleset(), "base policy (no desired state yet)", None
    node = env.hostname()
    try:
        text = path.read_text(encoding="utf-8")
        return (firewall.ruleset(load_text(text, env.desired_path), node),
                f"policy of node {node} from {env.desired_path}", None)
    except (OSError, UnicodeDecodeError) as exc:
        problem = IscsihaError.single("unreadable-file", "file", env.desired_path,
                                      "a readable UTF-8 TOML file", str(exc))
    except IscsihaError as exc:
        problem = exc
    except Exception as exc:  # a parser bug must not leave the box without any filter
        problem = IscsihaError.single(
            "bug", "file", env.desired_path, "a desired state iscsiha can read",
            f"this is a bug in iscsiha, please report it: {type(exc).__name__}: {exc}")
    return firewall.base_ruleset(), "base policy (the desired state is unusable)", problem


def apply(env: FirewallEnv) -> int:
    """Load the chosen ruleset; the exit code for the unit."""
    rules, what, problem = choose(env)
    if problem is not None:
        for report in problem.reports:
            env.log(f"{ERR}iscsiha-firewall: {report.field} {report.value!r}: "
                    f"{report.message or report.code} (allowed: {report.allowed})")
    Path(env.ruleset_path).parent.mkdir(parents=True, exist_ok=True)
    # Written fresh, 0600: it names the cluster's addresses, nothing secret, but it
    # is root's business only.
    fd = os.open(env.ruleset_path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_NOFOLLOW,
                 0o600)
    with os.fdopen(fd, "w") as out:
        out.write(rules)
    try:
        loaded = env.runner.run([NFT, "-f", env.ruleset_path], check=False)
    except IscsihaError as exc:  # no nft at all: the image is broken, not the kernel
        env.log(f"{CRIT}iscsiha-firewall: cannot run {NFT}: {exc}; this box runs WITHOUT "
                "A PACKET FILTER")
        return 1
    if loaded.ok:
        env.log(f"{INFO}iscsiha-firewall: loaded the {what} ({env.ruleset_path})")
        return 1 if problem is not None else 0
    if not _kernel_has_nftables(env):
        env.log(f"{CRIT}iscsiha-firewall: WARNING: this kernel has no usable nf_tables "
                f"(`nft` said: {_last_line(loaded)}); this box runs WITHOUT A PACKET FILTER. "
                "Expected only in the lab's user-mode Linux.")
        return 0
    env.log(f"{ERR}iscsiha-firewall: nft refused the {what} in {env.ruleset_path}: "
            f"{_last_line(loaded)}. This is a bug in iscsiha; please report it.")
    return 1


def _kernel_has_nftables(env: FirewallEnv) -> bool:
    probe = env.runner.run([NFT, "-f", "-"], input=PROBE, check=False)
    return probe.ok


def _last_line(result: CommandResult) -> str:
    lines = (result.stderr.strip() or result.stdout.strip()).splitlines()
    return lines[-1] if lines else f"exit code {result.returncode}"


def main(argv: Sequence[str] | None = None, env: FirewallEnv | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="iscsiha-firewall",
        description="Load this box's nftables policy (table inet iscsiha) from "
                    f"{DESIRED_PATH}, or the base policy when there is none.")
    parser.add_argument("--print", action="store_true",
                        help="print the ruleset that would be loaded, load nothing")
    args = parser.parse_args(argv)
    env = env or FirewallEnv(Runner())
    if args.print:
        rules, what, problem = choose(env)
        print(f"# {what}")
        print(rules, end="")
        return 1 if problem is not None else 0
    return apply(env)


if __name__ == "__main__":
    sys.exit(main())
