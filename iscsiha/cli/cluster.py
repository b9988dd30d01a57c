"""`iscsiha cluster`: form the two-box cluster (init on the first box, join on the second).

Its own module so the rest of the CLI stays small; main.py adds it with one call.
Errors are raised as IscsihaError and printed by main's one error boundary.
"""

from __future__ import annotations

import argparse
import getpass
import sys

from iscsiha.commands import bootstrap, replace
from iscsiha.commands.bootstrap_params import (
    NETWORK_ALLOWED,
    NETWORKS,
    REQUIRED_NETWORKS,
    InitRequest,
    cli_name,
)
from iscsiha.commands.bootstrap_steps import this_and_other
from iscsiha.commands.cluster_env import real_env
from iscsiha.commands.node_steps import DESIRED_PATH
from iscsiha.commands.tiebreaker import TiebreakerAccess, open_tiebreaker
from iscsiha.errors import IscsihaError, Secret
from iscsiha.executors import files
from iscsiha.executors.runner import Runner
from iscsiha.model.load import load_text
from iscsiha.views import init_lines, replace_lines

EXIT_OK, EXIT_REFUSED = 0, 1
STDIN = "-"  # the one value a secret's argument may have: read it from stdin


def add_parser(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = sub.add_parser("cluster", help="form the cluster: `init` on the first box, then "
                                       "`join TOKEN` on the second")
    csub = p.add_subparsers(required=True, metavar="ACTION")

    i = csub.add_parser(
        "init", help="set up this box as the first of the two and print a join token",
        description="Writes corosync.conf, the authkey, the cluster SSH key and the desired "
                    "state, enrols with the tiebreaker, starts corosync, corosync-qdevice and "
                    "pacemaker, sets the cluster properties, and prints a one-time token for "
                    "`iscsiha cluster join` on the other box. Checks everything first; a "
                    "failure undoes every change. Each network is given as "
                    f"{NETWORK_ALLOWED}. BMC passwords are asked on the terminal (or read "
                    "from stdin, one line each: this box's, then the peer's).")
    i.add_argument("--name", required=True, help="the cluster's name")
    i.add_argument("--node", help="this box's name (default: its host name, which it must be)")
    i.add_argument("--peer", required=True, help="the other box's name (its host name)")
    for name, role in NETWORKS:
        i.add_argument(cli_name(name), required=name in REQUIRED_NETWORKS,
                       metavar="SUBNET,THIS_BOX,PEER",
                       help=f"the {role} network '{name}'"
                            + ("" if name in REQUIRED_NETWORKS else " (a second one)"))
    i.add_argument("--ping", action="append", default=[], metavar="ADDRESS",
                   help="a host on a storage network that answers ping while a box's link "
                        "works, e.g. its switch (repeatable)")
    i.add_argument("--bmc", required=True, metavar="ADDRESS", help="this box's BMC (IPMI)")
    i.add_argument("--bmc-user", required=True, metavar="USER", help="its IPMI user")
    i.add_argument("--peer-bmc", required=True, metavar="ADDRESS", help="the peer's BMC")
    i.add_argument("--peer-bmc-user", metavar="USER", help="its IPMI user (default --bmc-user)")
    i.add_argument("--bmc-cipher", metavar="N",
                   help="both BMCs' IPMI cipher suite (ipmitool -C, 0-17); without it "
                        "ipmitool asks each BMC first, which some answer only after "
                        "seconds of retries on every fence call")
    i.add_argument("--tiebreaker", metavar="HOST",
                   help="the corosync-qnetd host; without one, fencing alone decides")
    i.add_argument("--tiebreaker-user", default="root", metavar="USER",
                   help="who signs this cluster's qdevice certificate there over SSH "
                        "(default root)")
    i.add_argument("--tiebreaker-signer", metavar="PROGRAM",
                   help="instead of SSH: a program run as `PROGRAM ca` and `PROGRAM sign "
                        "CLUSTER` (see docs/bootstrap.md)")
    i.set_defaults(func=_init, audited=True)

    j = csub.add_parser(
        "join", help="join the cluster a first box set up (`cluster init`)",
        description="The token `cluster init` printed is a secret and never an argument "
                    "(argv is visible in ps, sudo's log and the shell's history): it is "
                    "asked at the terminal without echo, or read as one line of stdin "
                    "(`echo \"$TOKEN\" | iscsiha cluster join -`).")
    # Any word is taken here so that a token given by mistake is refused by a report
    # that does not show it (argparse's own error would print the value).
    j.add_argument("token", nargs="?", metavar="-",
                   help="read the token from stdin (the default when stdin is not a "
                        "terminal); the token itself is refused here")
    j.set_defaults(func=_join, audited=True)

    t = csub.add_parser("token", help="a new join token on the first box, while its peer "
                                      "has not joined (the old one stops working)")
    t.set_defaults(func=_token, audited=True)

    r = csub.add_parser(
        "replace", help="on the box that stays: a join token for the box that replaces a "
                        "dead one (same name and addresses, empty disks)",
        description="Checks that NODE is gone (not online in Pacemaker), puts it in "
                    "standby and prints a one-time token. On the new box, as flashed and "
                    "with NODE's host name and addresses, `iscsiha cluster join` joins "
                    "with it, makes every volume anew and DRBD copies them in full from "
                    "this box (docs/replace.md).")
    r.add_argument("node", help="the dead box's name")
    r.set_defaults(func=_replace, audited=True)

    b = csub.add_parser(
        "rebuild", help="on a box that replaced a dead one: make its missing volumes and "
                        "resync (what `cluster join` does after `cluster replace`; run it "
                        "again after a failure)")
    b.add_argument("--wait", type=float, default=replace.RESYNC_WAIT, metavar="SECONDS",
                   help="show the resync's progress this long at most (default "
                        f"{replace.RESYNC_WAIT:.0f}; 0: do not wait)")
    b.set_defaults(func=_rebuild, audited=True)

    # What the join unit runs, not the admin: hidden by having no help= (help=SUPPRESS
    # would list it as "==SUPPRESS==").
    s = csub.add_parser("serve-join")
    s.set_defaults(func=_serve_join)


def _progress(message: str) -> None:
    print(f"iscsiha: {message}", file=sys.stderr, flush=True)


def read_secret(prompt: str) -> Secret:
    """One secret: asked without echo on a terminal, else one line of stdin."""
    if sys.stdin.isatty():
        return Secret(getpass.getpass(prompt))
    text = sys.stdin.readline()
    if not text:
        raise IscsihaError.single(
            "secret-missing", prompt.strip().rstrip(":"), None,
            "one line on stdin for each secret, in the order the command's help gives",
            "stdin ended before this secret; nothing was done")
    return Secret(text[:-1] if text.endswith("\n") else text)


def _passwords(node: str, peer: str) -> tuple[Secret, Secret]:
    return (read_secret(f"BMC password of {node} (not echoed): "),
            read_secret(f"BMC password of {peer} (not echoed): "))


def _init(args: argparse.Namespace) -> int:
    runner = Runner()
    env = bootstrap.host_env(runner)
    node = args.node or env.hostname()
    bmc_password, peer_password = _passwords(node, args.peer)
    request = InitRequest(
        name=args.name, node=args.node, peer=args.peer,
        networks={name: getattr(args, name) for name, _ in NETWORKS
                  if getattr(args, name) is not None},
        bmc=args.bmc, bmc_user=args.bmc_user, bmc_password=bmc_password,
        peer_bmc=args.peer_bmc, peer_bmc_user=args.peer_bmc_user or args.bmc_user,
        peer_bmc_password=peer_password, ping=tuple(args.ping), tiebreaker=args.tiebreaker,
        bmc_cipher=args.bmc_cipher)
    access = TiebreakerAccess(args.tiebreaker_user, args.tiebreaker_signer)
    with open_tiebreaker(runner, args.tiebreaker, access) as tiebreaker:
        result = bootstrap.init(env, request, tiebreaker, _progress, cli_name)
    print("\n".join(init_lines(result)))
    return EXIT_OK


def _join(args: argparse.Namespace) -> int:
    if args.token not in (None, STDIN):
        raise IscsihaError.single(
            "secret-on-command-line", "cluster join token", Secret(args.token),
            "`iscsiha cluster join` (asked without echo) or `iscsiha cluster join -` "
            "with the token as one line of stdin",
            "is a secret and never an argument (argv shows in ps, sudo's log and the "
            "shell's history); nothing was done")
    token = read_secret("join token (not echoed): ")
    env = bootstrap.host_env()
    config = bootstrap.join(env, token, _progress)
    me, first = this_and_other(config, env.hostname())
    print(f"{me.name} joined cluster {config.cluster.name} with {first.name}; "
          "`iscsiha status` shows both boxes.")
    return EXIT_OK


def _replace(args: argparse.Namespace) -> int:
    result = replace.replace(bootstrap.host_env(), args.node, _progress)
    print("\n".join(replace_lines(result)))
    return EXIT_OK


def _rebuild(args: argparse.Namespace) -> int:
    if not 0 <= args.wait <= replace.RESYNC_WAIT_MAX:
        raise IscsihaError.single("bad-wait", "--wait", args.wait,
                                  f"0 to {replace.RESYNC_WAIT_MAX:.0f} seconds")
    text = files.read_text(DESIRED_PATH)
    config = load_text(text, DESIRED_PATH)
    env = real_env(Runner(), config)
    done = replace.rebuild(env, config, text, _progress)
    state = replace.wait_resynced(env, done.minors, args.wait, _progress)
    print(replace.resync_line(state))
    return EXIT_OK


def _token(args: argparse.Namespace) -> int:
    result = bootstrap.reissue(bootstrap.host_env(), _progress)
    print("\n".join(init_lines(result)))
    return EXIT_OK


def _serve_join(args: argparse.Namespace) -> int:
    def log(message: str) -> None:
        print(f"iscsiha join: {message}", flush=True)  # the unit's journal

    return EXIT_OK if bootstrap.serve_join(bootstrap.host_env(), log) else EXIT_REFUSED
