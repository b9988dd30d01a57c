"""Public key lines shaped as ssh-keygen writes them (RFC 4253 blob), for fakes."""

from __future__ import annotations

import base64
import hashlib


def ed25519(tag: str) -> str:
    """``ssh-ed25519 BASE64`` with a key made from ``tag`` (the same tag, the same key)."""
    kind = b"ssh-ed25519"
    key = hashlib.sha256(tag.encode()).digest()
    blob = len(kind).to_bytes(4, "big") + kind + len(key).to_bytes(4, "big") + key
    return f"ssh-ed25519 {base64.b64encode(blob).decode()}"


CLUSTER = ed25519("cluster")
HOST = {name: ed25519(f"host {name}") for name in ("san-a", "san-b", "san-c")}
