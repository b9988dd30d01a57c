"""Floating addresses via netlink (pyroute2): the only module that imports pyroute2."""

from __future__ import annotations

import errno
from ipaddress import ip_address
from types import TracebackType
from typing import Any

from iscsiha.errors import IscsihaError
from iscsiha.model.types import IPAddress, IPNetwork


class Addresses:
    """Add, find and remove addresses; idempotent by errno, not by a bare except.

    Opened as a context manager so constructing it touches nothing.
    """

    def __init__(self, netns: str | None = None) -> None:
        self._netns = netns
        self._ipr: Any = None

    def __enter__(self) -> Addresses:
        # Imported here: pyroute2 takes seconds to import on a slow box (2 s in the
        # lab), and the target agent needs it only on stop.
        from pyroute2 import IPRoute

        self._ipr = IPRoute(netns=self._netns) if self._netns else IPRoute()
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self._ipr.close()
        self._ipr = None

    def interface_in(self, network: IPNetwork) -> str:
        """The interface that holds this box's own address in ``network``."""
        for ifname, addr, prefix in self._addresses():
            if addr in network and prefix == network.prefixlen:
                return ifname
        raise IscsihaError.single(
            "no-interface", "network", str(network),
            "a network this box has an address in", "no interface has an address there")

    def own(self) -> list[tuple[str, IPAddress, int]]:
        """Every address of this box: (interface, address, prefix length)."""
        return self._addresses()

    def holder(self, address: IPAddress) -> str | None:
        """The interface holding ``address``, or None."""
        return next((ifname for ifname, addr, _ in self._addresses() if addr == address), None)

    def add(self, address: IPAddress, prefixlen: int, ifname: str) -> bool:
        """Add the address; False if it was already there."""
        return self._change("add", errno.EEXIST, address, prefixlen, ifname)

    def remove(self, address: IPAddress, prefixlen: int, ifname: str) -> bool:
        """Remove the address; False if it was not there."""
        return self._change("del", errno.EADDRNOTAVAIL, address, prefixlen, ifname)

    def _change(self, verb: str, already: int, address: IPAddress, prefixlen: int,
                ifname: str) -> bool:
        from pyroute2.netlink.exceptions import NetlinkError

        try:
            self._ipr.addr(verb, index=self._index(ifname), address=str(address),
                           prefixlen=prefixlen)
        except NetlinkError as exc:
            if exc.code == already:
                return False
            raise IscsihaError.single(
                "address-failed", "address", f"{address}/{prefixlen}",
                f"an address the kernel accepts on {ifname}", f"{verb} failed: {exc}") from exc
        return True

    def _index(self, ifname: str) -> int:
        found = self._ipr.link_lookup(ifname=ifname)
        if not found:
            raise IscsihaError.single("no-such-interface", "interface", ifname,
                                      "an existing network interface")
        return int(found[0])

    def _addresses(self) -> list[tuple[str, IPAddress, int]]:
        names = {link["index"]: link.get_attr("IFLA_IFNAME") for link in self._ipr.get_links()}
        out = []
        for msg in self._ipr.get_addr():
            addr = msg.get_attr("IFA_ADDRESS")
            if addr is None:
                continue
            out.append((names.get(msg["index"], "?"), ip_address(addr), int(msg["prefixlen"])))
        return out
