"""Blocking a portal's TCP port with nftables while its target is not ready.

Dropped packets (not rejected) make an initiator retransmit its SYN quietly
instead of seeing a reset or an empty target mid-move. Runs nft through the
runner; elements in one table's sets are the only state.
"""

from __future__ import annotations

import fcntl
import os
from collections.abc import Iterator
from contextlib import contextmanager

from iscsiha.executors.runner import Runner
from iscsiha.model.types import IPAddress

NFT = "/usr/sbin/nft"
TABLE = "inet iscsiha"
LOCK = "/run/iscsiha/portblock.lock"

_TABLE_SCRIPT = f"""table {TABLE} {{
    set blocked4 {{ type ipv4_addr . inet_service; }}
    set blocked6 {{ type ipv6_addr . inet_service; }}
    chain input {{
        type filter hook input priority filter - 10; policy accept;
        ip daddr . tcp dport @blocked4 drop
        ip6 daddr . tcp dport @blocked6 drop
    }}
}}
"""


class PortBlock:
    def __init__(self, runner: Runner, lock_path: str = LOCK) -> None:
        self._runner = runner
        self._lock_path = lock_path

    def block(self, address: IPAddress, port: int) -> None:
        with self._locked():
            self._ensure_table()
            self._nft(f"add element {TABLE} {_set(address)} {{ {address} . {port} }}\n")

    def unblock(self, address: IPAddress, port: int) -> None:
        with self._locked():
            if not self._table_exists():
                return
            # add then delete in one transaction: never fails on an absent element.
            element = f"{TABLE} {_set(address)} {{ {address} . {port} }}"
            self._nft(f"add element {element}\ndelete element {element}\n")

    def is_blocked(self, address: IPAddress, port: int) -> bool:
        result = self._runner.run(
            [NFT, "get", "element", *TABLE.split(), _set(address), f"{{ {address} . {port} }}"],
            check=False)
        return result.ok

    def _table_exists(self) -> bool:
        return self._runner.run([NFT, "list", "table", *TABLE.split()], check=False).ok

    def _ensure_table(self) -> None:
        if not self._table_exists():
            self._nft(_TABLE_SCRIPT)

    def _nft(self, script: str) -> None:
        self._runner.run([NFT, "-f", "-"], input=script)

    @contextmanager
    def _locked(self) -> Iterator[None]:
        # Two targets' agents may start at once; the table and its rule are made once.
        os.makedirs(os.path.dirname(self._lock_path), exist_ok=True)
        with open(self._lock_path, "w") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)
            yield


def _set(address: IPAddress) -> str:
    return "blocked6" if address.version == 6 else "blocked4"
