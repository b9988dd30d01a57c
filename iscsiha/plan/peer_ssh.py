"""The SSH trust between the two boxes: one cluster key, usable only for apply's steps.

The authorized_keys entry forces `iscsiha node from-peer` (which runs only a known
step) and accepts the key only from the other box's cluster addresses.
"""

from __future__ import annotations

from collections.abc import Iterable

from iscsiha.model.types import IPAddress

ISCSIHA = "/usr/bin/iscsiha"
SSH_DIR = "/etc/iscsiha/ssh"
KEY = f"{SSH_DIR}/id_ed25519"
KNOWN_HOSTS = f"{SSH_DIR}/known_hosts"
AUTHORIZED_KEYS = f"{SSH_DIR}/authorized_keys"
FORCED_COMMAND = f"{ISCSIHA} node from-peer"


def authorized_keys(public_key: str, peer_addresses: Iterable[IPAddress]) -> str:
    sources = ",".join(str(a) for a in peer_addresses)
    return f'restrict,from="{sources}",command="{FORCED_COMMAND}" {public_key.strip()}\n'


def known_hosts(host_keys: Iterable[tuple[Iterable[IPAddress], str]]) -> str:
    """One line per box: its addresses, then its host public key ("TYPE BASE64")."""
    lines = []
    for addresses, key in host_keys:
        kind, blob = key.split()[:2]
        lines.append(f"{','.join(str(a) for a in addresses)} {kind} {blob}")
    return "\n".join(lines) + "\n"
