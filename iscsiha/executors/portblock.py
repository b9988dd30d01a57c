"""Blocking a portal's TCP port with a tc ingress filter while its target is not ready.

Dropped packets (not rejected) make an initiator retransmit its SYN quietly
instead of seeing a reset or an empty target mid-move. tc (an ingress qdisc with
a flower filter and a drop action) rather than nftables: the lab's UML kernel
has no nf_tables inet/ip family, and the appliance kernel has both. The filters
on the interfaces are the only state; one filter per blocked address and port.
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


@dataclass(frozen=True)
class _Filter:
    ifname: str
    pref: int
    address: str
    port: int


class PortBlock:
    def __init__(self, runner: Runner, lock_path: str = LOCK) -> None:
        self._runner = runner
        self._lock_path = lock_path

    def block(self, address: IPAddress, port: int, ifname: str) -> None:
        """Drop TCP packets to address:port arriving on ``ifname``; idempotent."""
        with self._locked():
            if any(f.ifname == ifname for f in self._matching(address, port)):
                return
            if not any(q.get("kind") == "ingress" for q in
                       self._json([TC, "-j", "qdisc", "show", "dev", ifname])):
                self._runner.run([TC, "qdisc", "add", "dev", ifname, "ingress"])
            prefs = [f.pref for f in self._filters(ifname)]
            pref = max([FIRST_PREF - 1, *prefs]) + 1
            proto = "ipv6" if address.version == 6 else "ip"
            self._runner.run([TC, "filter", "add", "dev", ifname, "ingress", "pref", str(pref),
                              "protocol", proto, "flower", "ip_proto", "tcp",
                              "dst_ip", str(address), "dst_port", str(port), "action", "drop"])

    def unblock(self, address: IPAddress, port: int) -> None:
        """Remove every block of address:port, on whichever interface; idempotent."""
        with self._locked():
            for f in self._matching(address, port):
                self._runner.run([TC, "filter", "del", "dev", f.ifname, "ingress",
                                  "pref", str(f.pref)])

    def is_blocked(self, address: IPAddress, port: int) -> bool:
        return bool(self._matching(address, port))

    def _matching(self, address: IPAddress, port: int) -> list[_Filter]:
        return [f for ifname in self._ingress_devices() for f in self._filters(ifname)
                if f.address == str(address) and f.port == port]

    def _ingress_devices(self) -> list[str]:
        return sorted({q["dev"] for q in self._json([TC, "-j", "qdisc", "show"])
                       if q.get("kind") == "ingress" and "dev" in q})

    def _filters(self, ifname: str) -> list[_Filter]:
        found = []
        for entry in self._json([TC, "-j", "filter", "show", "dev", ifname, "ingress"]):
            keys = entry.get("options", {}).get("keys", {})
            if entry.get("kind") == "flower" and "dst_ip" in keys and "dst_port" in keys:
                found.append(_Filter(ifname, int(entry["pref"]), keys["dst_ip"],
                                     int(keys["dst_port"])))
        return found

    def _json(self, argv: list[str]) -> list[dict[str, Any]]:
        out = self._runner.run(argv).stdout.strip()
        data = json.loads(out) if out else []
        return data if isinstance(data, list) else []

    def _locked(self) -> AbstractContextManager[None]:
        # Two targets' agents may start at once: one picks a filter's pref at a time.
        return exclusive(self._lock_path)
