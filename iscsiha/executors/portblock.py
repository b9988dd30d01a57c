"""Blocking a portal's TCP port with tc filters while its target is not ready.

Dropped packets (not rejected) make an initiator retransmit its SYN quietly
instead of seeing a reset or an empty target mid-move. A stopping target also drops
what the portal sends, so initiators see no FIN or reset while its connections are
handed to the next box (executors.handover). tc (a clsact qdisc with flower filters
and a drop action) rather than nftables: the lab's UML kernel has no nf_tables
inet/ip family, and the appliance kernel has both. The filters on the interfaces
are the only state; one filter per blocked address, port and direction. An
interface that still has the plain ingress qdisc an older version added blocks
incoming packets only.
"""

from __future__ import annotations

import json
from contextlib import AbstractContextManager
from dataclasses import dataclass
from typing import Any

from iscsiha.executors.locks import exclusive
from iscsiha.executors.runner import Runner
from iscsiha.model.types import IPAddress

TC = "/usr/sbin/tc"
LOCK = "/run/iscsiha/portblock.lock"
FIRST_PREF = 1000  # below: the admin's own filters, never touched
INGRESS, EGRESS = "ingress", "egress"
# The flower keys that name the portal's side of a packet, per direction.
_KEYS = {INGRESS: ("dst_ip", "dst_port"), EGRESS: ("src_ip", "src_port")}


@dataclass(frozen=True)
class _Filter:
    ifname: str
    direction: str
    pref: int
    address: str
    port: int


class PortBlock:
    def __init__(self, runner: Runner, lock_path: str = LOCK) -> None:
        self._runner = runner
        self._lock_path = lock_path

    def block(self, address: IPAddress, port: int, ifname: str, *,
              outgoing: bool = False) -> None:
        """Drop TCP packets to address:port arriving on ``ifname`` and, with
        ``outgoing``, those it sends from there; idempotent."""
        with self._locked():
            kinds = self._qdisc_kinds(ifname)
            if not kinds & {"ingress", "clsact"}:
                self._runner.run([TC, "qdisc", "add", "dev", ifname, "clsact"])
                kinds.add("clsact")
            directions = [INGRESS] + ([EGRESS] if outgoing and "clsact" in kinds else [])
            for direction in directions:
                filters = self._filters(ifname, direction)
                if any(f.address == str(address) and f.port == port for f in filters):
                    continue
                pref = max([FIRST_PREF - 1, *(f.pref for f in filters)]) + 1
                ip_key, port_key = _KEYS[direction]
                proto = "ipv6" if address.version == 6 else "ip"
                self._runner.run([TC, "filter", "add", "dev", ifname, direction, "pref",
                                  str(pref), "protocol", proto, "flower", "ip_proto", "tcp",
                                  ip_key, str(address), port_key, str(port),
                                  "action", "drop"])

    def unblock(self, address: IPAddress, port: int) -> None:
        """Remove every block of address:port, on whichever interface; idempotent."""
        with self._locked():
            for f in self._matching(address, port):
                self._runner.run([TC, "filter", "del", "dev", f.ifname, f.direction,
                                  "pref", str(f.pref)])

    def is_blocked(self, address: IPAddress, port: int) -> bool:
        """Whether initiators are kept out (incoming packets dropped)."""
        return any(f.direction == INGRESS for f in self._matching(address, port))

    def _matching(self, address: IPAddress, port: int) -> list[_Filter]:
        return [f for ifname, kind in self._classifying_devices()
                for direction in ((INGRESS, EGRESS) if kind == "clsact" else (INGRESS,))
                for f in self._filters(ifname, direction)
                if f.address == str(address) and f.port == port]

    def _qdisc_kinds(self, ifname: str) -> set[str]:
        return {str(q.get("kind")) for q in self._json([TC, "-j", "qdisc", "show", "dev", ifname])}

    def _classifying_devices(self) -> list[tuple[str, str]]:
        return sorted({(q["dev"], q["kind"]) for q in self._json([TC, "-j", "qdisc", "show"])
                       if q.get("kind") in ("ingress", "clsact") and "dev" in q})

    def _filters(self, ifname: str, direction: str) -> list[_Filter]:
        ip_key, port_key = _KEYS[direction]
        found = []
        for entry in self._json([TC, "-j", "filter", "show", "dev", ifname, direction]):
            keys = entry.get("options", {}).get("keys", {})
            if entry.get("kind") == "flower" and ip_key in keys and port_key in keys:
                found.append(_Filter(ifname, direction, int(entry["pref"]), keys[ip_key],
                                     int(keys[port_key])))
        return found

    def _json(self, argv: list[str]) -> list[dict[str, Any]]:
        out = self._runner.run(argv).stdout.strip()
        data = json.loads(out) if out else []
        return data if isinstance(data, list) else []

    def _locked(self) -> AbstractContextManager[None]:
        # Two targets' agents may start at once: one picks a filter's pref at a time.
        return exclusive(self._lock_path)
