"""ocf:iscsiha:address: a target's floating portal addresses, ports blocked until ready.

start blocks each portal's port, adds its address on the interface that holds this
box's own address in the same subnet, and announces it (gratuitous ARP). The target
agent unblocks the ports once its LUNs are up. One resource holds all of a target's
portals (one per storage network: its initiators' paths), so a move adds and removes
them in one operation each way rather than one after another in the target's group.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Callable, Mapping
from ipaddress import IPv4Address, ip_interface
from typing import TextIO

from iscsiha.agents.ocf import AgentError, AgentSpec, Param, Params, Rc, run
from iscsiha.errors import IscsihaError
from iscsiha.executors.addresses import Addresses
from iscsiha.executors.portblock import PortBlock
from iscsiha.executors.runner import Runner
from iscsiha.model.names import parse_decimal, parse_ip
from iscsiha.model.types import IPAddress

ARPING = "/usr/bin/arping"  # iputils-arping

SPEC = AgentSpec(
    name="address",
    shortdesc="Floating iSCSI portal address",
    longdesc=("Adds a floating address for an iSCSI portal on the interface in its subnet, "
              "with the portal's TCP port blocked until the target agent is ready."),
    params=(
        Param("ip", "Floating addresses",
              "The IPv4 or IPv6 addresses initiators log in to, space-separated: one per "
              "storage network.", required=True, unique=True),
        Param("cidr_netmask", "Prefix lengths",
              "The prefix length of each address's storage network, space-separated in the "
              "order of ip (one value: the same for all).", required=True),
        Param("port", "iSCSI ports",
              "Each portal's TCP port, blocked until the target is up, in the order of ip "
              "(one value: the same for all).", default="3260"),
    ),
)


class AddressAgent:
    spec = SPEC

    def __init__(self, addresses: Callable[[], Addresses], portblock: PortBlock,
                 runner: Runner) -> None:
        self._addresses = addresses
        self._portblock = portblock
        self._runner = runner

    def validate(self, params: Params) -> None:
        _parse(params)

    def start(self, params: Params) -> Rc:
        portals = _parse(params)
        added = []
        with self._addresses() as addrs:
            for address, prefix, port in portals:
                try:
                    ifname = addrs.interface_in(ip_interface(f"{address}/{prefix}").network)
                except IscsihaError as exc:
                    # This box lacks a storage network: let Pacemaker run it on the other.
                    raise AgentError(Rc.ERR_INSTALLED, str(exc)) from exc
                self._portblock.block(address, port, ifname)
                addrs.add(address, prefix, ifname)
                added.append((address, ifname))
        for address, ifname in added:
            if isinstance(address, IPv4Address):
                self._announce(address, ifname)
        return Rc.SUCCESS

    def _announce(self, address: IPv4Address, ifname: str) -> None:
        """Tell switches and initiators where the address lives now (gratuitous ARP).

        In the background, as IPaddr2 does: the start (and so a move) does not wait
        for it, and a lost announcement only delays initiators until their ARP
        entries expire.
        """
        try:
            self._runner.spawn([ARPING, "-q", "-U", "-c", "3", "-I", ifname,
                                "-s", str(address), str(address)])
        except OSError as exc:
            print(f"address: gratuitous ARP for {address} not sent: {exc}", file=sys.stderr)

    def stop(self, params: Params) -> Rc:
        portals = _parse(params)
        with self._addresses() as addrs:
            for address, prefix, _ in portals:
                holder = addrs.holder(address)
                if holder is not None:
                    addrs.remove(address, prefix, holder)
        for address, _, port in portals:
            self._portblock.unblock(address, port)
        return Rc.SUCCESS

    def monitor(self, params: Params) -> Rc:
        portals = _parse(params)
        with self._addresses() as addrs:
            missing = [str(a) for a, _, _ in portals if addrs.holder(a) is None]
        if len(missing) == len(portals):
            return Rc.NOT_RUNNING
        if missing:
            # Half a portal set is a failure Pacemaker recovers (stop, then start).
            raise AgentError(Rc.ERR_GENERIC, f"address {' '.join(missing)} is missing")
        return Rc.SUCCESS


MAX_PORTALS = 8


def _parse(params: Params) -> list[tuple[IPAddress, int, int]]:
    """(address, prefix length, port) of each portal."""
    texts = params.get("ip", "").split()
    if not 1 <= len(texts) <= MAX_PORTALS:
        raise AgentError(Rc.ERR_CONFIGURED, f"ip={params.get('ip', '')[:60]!r}: allowed 1 to "
                         f"{MAX_PORTALS} addresses, space-separated")
    addresses = []
    for text in texts:
        address = parse_ip(text)
        if address is None:
            raise AgentError(Rc.ERR_CONFIGURED,
                             f"ip={text[:60]!r}: not an IP address (without a zone)")
        addresses.append(address)
    if len(set(addresses)) != len(addresses):
        raise AgentError(Rc.ERR_CONFIGURED, f"ip={params.get('ip', '')[:60]!r}: an address "
                         "appears twice")
    prefixes = [parse_decimal(p, 1, a.max_prefixlen) for p, a in zip(
        _each(params, "cidr_netmask", "", len(addresses)), addresses, strict=True)]
    ports = [parse_decimal(p, 1, 65535)
             for p in _each(params, "port", "3260", len(addresses))]
    portals = []
    for address, prefix, port in zip(addresses, prefixes, ports, strict=True):
        if prefix is None:
            raise AgentError(Rc.ERR_CONFIGURED, f"cidr_netmask={params.get('cidr_netmask')!r:.60}"
                             f": allowed 1 to {address.max_prefixlen} for {address}")
        if port is None:
            raise AgentError(Rc.ERR_CONFIGURED,
                             f"port={params.get('port')!r:.60}: allowed 1 to 65535")
        portals.append((address, prefix, port))
    return portals


def _each(params: Params, name: str, default: str, count: int) -> list[str]:
    """A parameter's value for each of ``count`` addresses: one per address, or one for all."""
    values = params.get(name, default).split() or [""]
    if len(values) == 1:
        return values * count
    if len(values) != count:
        raise AgentError(Rc.ERR_CONFIGURED, f"{name}={params.get(name)!r:.60}: allowed one "
                         f"value, or one per address ({count})")
    return values


def dispatch(argv: list[str], environ: Mapping[str, str], out: TextIO, err: TextIO) -> int:
    """One action, from its argv and environment (the agent helper's entry)."""
    runner = Runner()
    return run(lambda: AddressAgent(Addresses, PortBlock(runner), runner), SPEC,
               argv, environ, out, err)


def main(argv: list[str] | None = None) -> int:
    return dispatch(argv or sys.argv, os.environ, sys.stdout, sys.stderr)
