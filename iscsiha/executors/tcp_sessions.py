"""The established TCP connections to a portal, as this box's kernel lists them
(/proc/net/tcp and /proc/net/tcp6)."""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass
from ipaddress import IPv4Address, IPv6Address

from iscsiha.model.types import IPAddress, host_port

TABLES = ("/proc/net/tcp", "/proc/net/tcp6")
ESTABLISHED = "01"  # include/net/tcp_states.h
READ_MAX = 4 * 1024 * 1024  # a table this long is not a storage box's


@dataclass(frozen=True)
class Connection:
    local: IPAddress
    local_port: int
    remote: IPAddress
    remote_port: int

    def __str__(self) -> str:
        local, remote = (host_port(self.local, self.local_port),
                         host_port(self.remote, self.remote_port))
        return f"{local}={remote}"


def _read(path: str) -> str:
    try:
        with open(path, "rb") as f:
            return f.read(READ_MAX).decode("ascii", errors="replace")
    except OSError:
        return ""  # no IPv6 in this kernel: no connections there


def _endpoint(text: str) -> tuple[IPAddress, int] | None:
    """``0100007F:0CBC`` (IPv4) or 32 hex digits (IPv6), each 32-bit word in host order."""
    address, _, port = text.partition(":")
    try:
        number = int(port, 16)
        if len(address) == 8:
            return IPv4Address(bytes(reversed(bytes.fromhex(address)))), number
        if len(address) == 32:
            raw = bytes.fromhex(address)
            return IPv6Address(b"".join(raw[i:i + 4][::-1] for i in range(0, 16, 4))), number
    except ValueError:
        pass
    return None


def parse(table: str) -> list[Connection]:
    """The established connections a /proc/net/tcp{,6} table lists; other lines are skipped."""
    found = []
    for line in table.splitlines()[1:]:
        fields = line.split()
        if len(fields) < 4 or fields[3] != ESTABLISHED:
            continue
        local, remote = _endpoint(fields[1]), _endpoint(fields[2])
        if local is None or remote is None or not (0 < local[1] < 65536 and 0 < remote[1] < 65536):
            continue
        found.append(Connection(local[0], local[1], remote[0], remote[1]))
    return found


def established(portals: Iterable[tuple[IPAddress, int]],
                read: Callable[[str], str] = _read) -> list[Connection]:
    """The established connections whose local end is one of ``portals``, sorted."""
    wanted = set(portals)
    return sorted({c for path in TABLES for c in parse(read(path))
                   if (c.local, c.local_port) in wanted}, key=str)
