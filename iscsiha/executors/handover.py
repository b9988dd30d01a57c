"""Handing a target's iSCSI connections to the box that serves it next.

The old box's target agent drops the portal's outgoing packets before it removes the
target, so initiators see no FIN or reset and keep their connections open. The new
box, once its target is ready, sends each one a tickle ACK (resource-agents'
tickle_tcp, as portblock's tickle_dir does): the initiator answers it, the new box has
no such connection and resets it, and the initiator logs in again at once, instead of
after its own reconnect timers (TCP's SYN backoff, iscsid's 3 s retry).

The list travels as a private Pacemaker node attribute (attrd, never written to the
CIB, so no transition is recalculated) set for every other box: written by stop on a
planned move, and kept current by monitor for a box that dies. Nothing here may fail
an agent's action: a connection not tickled only waits for its initiator's timers.
"""

from __future__ import annotations

import os
import re
import sys
import time
from collections.abc import Iterable, Sequence

from iscsiha.errors import IscsihaError
from iscsiha.executors.runner import Runner
from iscsiha.executors.tcp_sessions import Connection
from iscsiha.model.names import parse_decimal, parse_ip
from iscsiha.model.types import IPAddress

ATTRD_UPDATER = "/usr/sbin/attrd_updater"
CRM_NODE = "/usr/sbin/crm_node"
TICKLE_TCP = "/usr/libexec/heartbeat/tickle_tcp"  # resource-agents
STATE_DIR = "/run/iscsiha/handover"
MAX_CONNECTIONS = 256
TICKLES = 3  # per connection, as portblock sends
# keep() records again at least this often: a box that rebooted lost what it was given.
REFRESH_S = 60.0
_INSTANCE = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.:-]{0,62}\Z", re.ASCII)
_ENDPOINT = re.compile(r"\[?([0-9A-Fa-f.:]+)\]?:(\d{1,5})\Z", re.ASCII)
_VALUE = re.compile(r'\bvalue="([^"]*)"', re.ASCII)


def attribute(instance: str | None) -> str | None:
    """The attribute that carries a resource's connections; None for an odd name."""
    if instance is None or not _INSTANCE.match(instance):
        return None
    return f"iscsiha-conns-{instance}"


def encode(connections: Iterable[Connection]) -> str:
    return " ".join(str(c) for c in list(connections)[:MAX_CONNECTIONS])


def _endpoint(text: str) -> tuple[IPAddress, int] | None:
    found = _ENDPOINT.match(text)
    if found is None:
        return None
    address, port = parse_ip(found.group(1)), parse_decimal(found.group(2), 1, 65535)
    if address is None or port is None or (address.version == 6) != text.startswith("["):
        return None
    return address, port


def decode(value: str, portals: Iterable[tuple[IPAddress, int]]) -> list[Connection]:
    """The connections in an attribute's value whose local end is one of ``portals``;
    anything else in it (another target's, a malformed entry) is left out."""
    wanted = set(portals)
    found = []
    for word in value.split()[:MAX_CONNECTIONS]:
        local_text, sep, remote_text = word.partition("=")
        local, remote = _endpoint(local_text), _endpoint(remote_text)
        if not sep or local is None or remote is None or local not in wanted:
            continue
        if local[0].version != remote[0].version:
            continue
        found.append(Connection(local[0], local[1], remote[0], remote[1]))
    return found


def tickle_lines(connections: Iterable[Connection]) -> str:
    """tickle_tcp's input: LOCAL:PORT REMOTE:PORT per line, IPv6 without brackets."""
    return "".join(f"{c.local}:{c.local_port} {c.remote}:{c.remote_port}\n"
                   for c in connections)


class Handover:
    def __init__(self, runner: Runner, instance: str | None,
                 state_dir: str = STATE_DIR) -> None:
        self._runner = runner
        self._name = attribute(instance)
        self._state = os.path.join(state_dir, instance) if self._name and instance else None

    def record(self, connections: Sequence[Connection]) -> None:
        """Give ``connections`` to every other box (or nothing, when there are none)."""
        if self._name is None:
            return
        value = encode(connections)
        try:
            here = self._here()
            for node in self._nodes():
                if node == here:
                    continue
                if value:
                    self._attrd("-U", value, "-N", node, "-p")
                else:
                    self._attrd("-D", "-N", node)
        except (IscsihaError, OSError) as exc:
            _warn(f"connections not handed over: {exc}")
            return
        self._remember(value)

    def keep(self, connections: Sequence[Connection]) -> None:
        """record, only when the list changed since this box last recorded it."""
        if self._name is None or self._remembered() == encode(connections):
            return
        self.record(connections)

    def tickle(self, portals: Iterable[tuple[IPAddress, int]]) -> int:
        """Tickle the connections handed to this box for ``portals``, then forget them;
        how many were tickled."""
        if self._name is None:
            return 0
        try:
            # Without -N, attrd_updater reads and deletes this box's value: no crm_node
            # call on the failover path.
            found = _VALUE.search(self._attrd("-Q"))
            connections = decode(found.group(1), portals) if found else []
            if connections:
                self._runner.run([TICKLE_TCP, "-n", str(TICKLES)],
                                 input=tickle_lines(connections), timeout=10)
            self._attrd("-D")
        except (IscsihaError, OSError) as exc:
            _warn(f"handed-over connections not tickled: {exc}")
            return 0
        self._remember(None)
        return len(connections)

    def _attrd(self, *args: str) -> str:
        assert self._name is not None
        result = self._runner.run([ATTRD_UPDATER, "-n", self._name, *args], check=False,
                                  timeout=10)
        if result.returncode != 0 and "-Q" not in args:
            raise IscsihaError.single("attrd-failed", self._name, result.returncode,
                                      "attrd_updater exit 0", result.stderr.strip()[:200])
        return result.stdout

    def _here(self) -> str:
        return self._runner.run([CRM_NODE, "-n"], timeout=10).stdout.strip()

    def _nodes(self) -> list[str]:
        out = self._runner.run([CRM_NODE, "-l"], timeout=10).stdout
        return [f[1] for f in (line.split() for line in out.splitlines()) if len(f) >= 2]

    def _remembered(self) -> str | None:
        if self._state is None:
            return None
        try:
            if time.time() - os.stat(self._state).st_mtime > REFRESH_S:
                return None
            with open(self._state, encoding="ascii") as f:
                return f.read(MAX_CONNECTIONS * 120)
        except (OSError, ValueError):
            return None

    def _remember(self, value: str | None) -> None:
        if self._state is None:
            return
        try:
            if value is None:
                os.unlink(self._state)
                return
            os.makedirs(os.path.dirname(self._state), mode=0o700, exist_ok=True)
            with open(self._state, "w", encoding="ascii") as f:
                f.write(value)
        except OSError:
            pass  # monitor records again next time: only an extra attrd call


def _warn(message: str) -> None:
    print(f"target: {message}", file=sys.stderr)
