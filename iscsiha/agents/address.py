"""ocf:iscsiha:address: a target's floating portal address, port blocked until ready.

start blocks the portal's port, adds the address on the interface that holds
this box's own address in the same subnet, and announces it (gratuitous ARP).
The target agent unblocks the port once its LUNs are up.
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
        Param("ip", "Floating address", "The IPv4 or IPv6 address initiators log in to.",
              required=True, unique=True),
        Param("cidr_netmask", "Prefix length", "The prefix length of the storage network.",
              kind="integer", required=True),
        Param("port", "iSCSI port", "The portal's TCP port, blocked until the target is up.",
              kind="integer", default="3260"),
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
        address, prefix, port = _parse(params)
        with self._addresses() as addrs:
            try:
                ifname = addrs.interface_in(ip_interface(f"{address}/{prefix}").network)
            except IscsihaError as exc:
                # This box lacks the storage network: let Pacemaker run it on the other.
                raise AgentError(Rc.ERR_INSTALLED, str(exc)) from exc
            self._portblock.block(address, port, ifname)
            addrs.add(address, prefix, ifname)
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
        address, prefix, port = _parse(params)
        with self._addresses() as addrs:
            holder = addrs.holder(address)
            if holder is not None:
                addrs.remove(address, prefix, holder)
        self._portblock.unblock(address, port)
        return Rc.SUCCESS

    def monitor(self, params: Params) -> Rc:
        address, _, _ = _parse(params)
        with self._addresses() as addrs:
            return Rc.SUCCESS if addrs.holder(address) else Rc.NOT_RUNNING


def _parse(params: Params) -> tuple[IPAddress, int, int]:
    address = parse_ip(params.get("ip", ""))
    if address is None:
        raise AgentError(Rc.ERR_CONFIGURED,
                         f"ip={params.get('ip', '')[:60]!r}: not an IP address (without a zone)")
    prefix = parse_decimal(params.get("cidr_netmask", ""), 1, address.max_prefixlen)
    if prefix is None:
        raise AgentError(Rc.ERR_CONFIGURED, f"cidr_netmask={params.get('cidr_netmask')!r:.60}: "
                         f"allowed 1 to {address.max_prefixlen}")
    port = parse_decimal(params.get("port", "3260"), 1, 65535)
    if port is None:
        raise AgentError(Rc.ERR_CONFIGURED,
                         f"port={params.get('port')!r:.60}: allowed 1 to 65535")
    return address, prefix, port


def dispatch(argv: list[str], environ: Mapping[str, str], out: TextIO, err: TextIO) -> int:
    """One action, from its argv and environment (the agent helper's entry)."""
    runner = Runner()
    return run(lambda: AddressAgent(Addresses, PortBlock(runner), runner), SPEC,
               argv, environ, out, err)


def main(argv: list[str] | None = None) -> int:
    return dispatch(argv or sys.argv, os.environ, sys.stdout, sys.stderr)
