"""The SSH trust between the two boxes: one cluster key, usable only for apply's steps.

The authorized_keys entry forces `iscsiha node from-peer` (which runs only a known
step) and accepts the key only from the other box's cluster addresses.
"""

from __future__ import annotations

import base64
import binascii
import re
from collections.abc import Iterable

from iscsiha.errors import IscsihaError
from iscsiha.model.types import IPAddress

ISCSIHA = "/usr/bin/iscsiha"
SSH_DIR = "/etc/iscsiha/ssh"
KEY = f"{SSH_DIR}/id_ed25519"
KNOWN_HOSTS = f"{SSH_DIR}/known_hosts"
AUTHORIZED_KEYS = f"{SSH_DIR}/authorized_keys"
FORCED_COMMAND = f"{ISCSIHA} node from-peer"


KEY_TYPES = ("ssh-ed25519", "ecdsa-sha2-nistp256", "ecdsa-sha2-nistp384",
             "ecdsa-sha2-nistp521", "ssh-rsa")
KEY_ALLOWED = f"one line: TYPE BASE64 [COMMENT], TYPE one of {', '.join(KEY_TYPES)}"
_KEY = re.compile(r"(?P<kind>[a-z0-9-]{1,32}) (?P<blob>[A-Za-z0-9+/]{1,8192}={0,2})"
                  r"(?: [\x21-\x7e ]{0,200})?")


def public_key_problem(key: str) -> str | None:
    """Why ``key`` is not one SSH public key line, or None. A newline or quote in what
    a box sends would add a line (or options) to authorized_keys or known_hosts."""
    m = _KEY.fullmatch(key.removesuffix("\n"))  # as a .pub file holds it
    if m is None or '"' in key:
        return "is not TYPE BASE64 [COMMENT] on one line of printable characters"
    if m["kind"] not in KEY_TYPES:
        return f"has key type {m['kind']}"
    try:
        blob = base64.b64decode(m["blob"], validate=True)
    except binascii.Error:
        return "has a key that is not base64"
    # The blob starts with the key type again (RFC 4253 6.6: string, then the key).
    n = int.from_bytes(blob[:4], "big")
    if blob[4:4 + n] != m["kind"].encode():
        return "has a key whose data is not of its type"
    return None


def checked_key(key: str, what: str) -> tuple[str, str]:
    """(TYPE, BASE64) of a public key line; IscsihaError naming ``what`` if it is not one."""
    problem = public_key_problem(key)
    if problem is not None:
        raise IscsihaError.single("bad-ssh-key", what, key[:60], KEY_ALLOWED, problem)
    kind, blob = key.split()[:2]
    return kind, blob


def authorized_keys(public_key: str, peer_addresses: Iterable[IPAddress]) -> str:
    sources = ",".join(str(a) for a in peer_addresses)
    kind, blob = checked_key(public_key, "cluster SSH public key")
    return f'restrict,from="{sources}",command="{FORCED_COMMAND}" {kind} {blob}\n'


def known_hosts(host_keys: Iterable[tuple[Iterable[IPAddress], str]]) -> str:
    """One line per box: its addresses, then its host public key ("TYPE BASE64")."""
    lines = []
    for addresses, key in host_keys:
        kind, blob = checked_key(key, "SSH host key")
        lines.append(f"{','.join(str(a) for a in addresses)} {kind} {blob}")
    return "\n".join(lines) + "\n"
