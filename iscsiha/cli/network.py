"""`iscsiha network`: this box's own addresses, bonds, VLANs and MTUs.

Its own module so the rest of the CLI stays small; main.py adds it with one call.
"""

from __future__ import annotations

import argparse
import sys
import time

from iscsiha.commands import network
from iscsiha.model import box_network
from iscsiha.model.types import BondMode

EXIT_OK = 0


def add_parser(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = sub.add_parser("network", help="this box's networks: addresses, bonds, VLANs, MTU; "
                                       "applied as a trial that reverts unless confirmed")
    nsub = p.add_subparsers(required=True, metavar="ACTION")
    s = nsub.add_parser("show", help="the box's networks and whether they are applied")
    s.set_defaults(func=_show)
    s = nsub.add_parser("nics", help="the box's links: name, MAC, state and addresses")
    s.set_defaults(func=lambda a: _print(network.nics(network.real_env())))
    s = nsub.add_parser("set", help="add or replace one network of this box (not applied "
                                    "until `apply`)")
    s.add_argument("name", help="the network's name, as in the desired state (link0, repl...)")
    s.add_argument("--link", required=True,
                   help="the NIC, bond or NIC.VLAN that carries it (eno1, bond0, bond0.30)")
    s.add_argument("--address", required=True, metavar="ADDRESS/PREFIX",
                   help="this box's address with the prefix length, e.g. 10.10.0.11/24")
    s.add_argument("--mtu", type=int, help="1280-9216 (default 1500)")
    s.add_argument("--gateway", metavar="ADDRESS", help="the default route, on one network")
    s.set_defaults(func=_set)
    s = nsub.add_parser("delete", help="remove one network of this box (its NIC goes back "
                                       "to DHCP once applied)")
    s.add_argument("name")
    s.set_defaults(func=lambda a: _edited(network.delete_network(network.real_env(), a.name)))
    s = nsub.add_parser("bond", help="add or replace a bond of NICs")
    s.add_argument("name", help="the bond's name (bond0)")
    s.add_argument("--members", required=True, metavar="NIC,NIC", help="its NICs")
    s.add_argument("--mode", choices=[m.value for m in BondMode],
                   help="active-backup (default, any switch) or 802.3ad (LACP)")
    s.set_defaults(func=_bond)
    s = nsub.add_parser("unbond", help="remove a bond")
    s.add_argument("name")
    s.set_defaults(func=lambda a: _edited(network.delete_bond(network.real_env(), a.name)))
    s = nsub.add_parser("dns", help="the DNS servers (none: clear them)")
    s.add_argument("servers", nargs="*", metavar="ADDRESS")
    s.set_defaults(func=lambda a: _edited(network.set_dns(network.real_env(), a.servers)))
    s = nsub.add_parser("apply", help="apply the box's networks as a trial: confirm "
                                      "within --within seconds or they are put back")
    s.add_argument("--within", type=int, default=network.WITHIN_DEFAULT, metavar="SECONDS",
                   help=f"{network.WITHIN_MIN}-{network.WITHIN_MAX} "
                        f"(default {network.WITHIN_DEFAULT})")
    s.set_defaults(func=_apply)
    s = nsub.add_parser("confirm", help="keep the change being tried")
    s.set_defaults(func=_confirm)
    s = nsub.add_parser("revert", help="put back the networks from before the change being "
                                       "tried")
    s.add_argument("--trial", metavar="ID", help="only this change")
    s.add_argument("--wait", action="store_true", help="wait for its deadline first "
                                                        "(what `apply` starts)")
    s.add_argument("--boot", action="store_true",
                   help="files only, before networkd starts (iscsiha-network-trial.service)")
    s.set_defaults(func=_revert)


def _print(lines: list[str]) -> int:
    print("\n".join(lines))
    return EXIT_OK


def _show(args: argparse.Namespace) -> int:
    print("\n".join(network.show(network.real_env())))
    return EXIT_OK


def _set(args: argparse.Namespace) -> int:
    return _edited(network.set_network(network.real_env(), args.name, args.link, args.address,
                                       args.mtu, args.gateway))


def _bond(args: argparse.Namespace) -> int:
    members = [m for m in args.members.split(",") if m]
    return _edited(network.set_bond(network.real_env(), args.name, members, args.mode))


def _edited(_: object) -> int:
    print(f"saved in {box_network.PATH}; `iscsiha network apply` to apply it")
    return EXIT_OK


def _apply(args: argparse.Namespace) -> int:
    env = network.real_env()
    trial = network.apply(env, args.within)
    if trial is None:
        print("already applied: nothing to do")
        return EXIT_OK
    for text in network.missing_addresses(env, network.load(env)):
        print(f"warning: {text} is not there yet (no such link, or networkd refused it: "
              "`networkctl status`)", file=sys.stderr)
    at = time.strftime("%H:%M:%S", time.localtime(trial.deadline))
    print(f"applied as trial {trial.id}. Check that you can still reach the box (a new SSH "
          f"session), then `iscsiha network confirm`; otherwise the previous networks come "
          f"back at {at} ({args.within} s).")
    return EXIT_OK


def _confirm(args: argparse.Namespace) -> int:
    trial = network.confirm(network.real_env())
    print(f"confirmed: trial {trial.id} is kept")
    return EXIT_OK


def _revert(args: argparse.Namespace) -> int:
    trial = network.revert(network.real_env(), args.trial, args.wait, args.boot)
    print("nothing to put back" if trial is None
          else f"put back the networks from before trial {trial.id}")
    return EXIT_OK
