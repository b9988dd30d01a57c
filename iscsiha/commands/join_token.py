"""The one-time join token `cluster init` prints and `cluster join` reads.

It carries where the first box waits (its address on the first cluster link and
the port) and a 128-bit random secret, the pre-shared key of the TLS 1.3
connection the second box makes there (docs/bootstrap.md). Written as
``ISJ1-`` and base32 in groups (no 0, 1, 8 or 9 to confuse with O, I or B; case
does not matter) so it can be typed from one console into the other; a 32-bit
checksum catches a mistyped character before anything is sent anywhere.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import ipaddress
import re
from dataclasses import dataclass, field

from iscsiha.errors import IscsihaError, Report, Secret
from iscsiha.model.types import IPAddress, host_port

PREFIX = "ISJ1-"
SECRET_BYTES = 16  # 128 bits: RFC 9257 asks at least that much entropy of an external PSK
CHECK_BYTES = 4
GROUP = 6
_ALPHABET = "ABCDEFGHIJKLMNOPQRSTUVWXYZ234567"
# Payload: address (4 or 16 bytes), port (2), secret, checksum; base32 without padding.
_LENGTHS = {
    4: -(-(4 + 2 + SECRET_BYTES + CHECK_BYTES) * 8 // 5),
    6: -(-(16 + 2 + SECRET_BYTES + CHECK_BYTES) * 8 // 5),
}
ALLOWED = (f"the token `cluster init` printed on the first box: {PREFIX} then "
           f"{_LENGTHS[4]} (IPv4) or {_LENGTHS[6]} (IPv6) letters A-Z and digits 2-7, "
           "in groups separated by '-'")


@dataclass(frozen=True)
class JoinToken:
    address: IPAddress  # the first box, on its first cluster link
    port: int
    secret: bytes = field(repr=False)

    @property
    def where(self) -> str:
        return host_port(self.address, self.port)


def encode(token: JoinToken) -> str:
    body = token.address.packed + token.port.to_bytes(2, "big") + token.secret
    data = body + _check(body)
    text = base64.b32encode(data).decode().rstrip("=")
    return PREFIX + "-".join(text[i:i + GROUP] for i in range(0, len(text), GROUP))


def decode(text: str) -> JoinToken:
    """The token in ``text``; an error says what is wrong without showing the secret."""
    shown = Secret(text.strip())

    def refuse(code: str, message: str) -> IscsihaError:
        return IscsihaError([Report(code, "token", shown, ALLOWED, message)])

    token = text.strip()
    if not token:
        raise refuse("token-missing", "is empty")
    head = token[:len(PREFIX)].upper()
    if head != PREFIX:
        version = re.match(r"ISJ(\d+)-", token.upper())
        if version:
            raise refuse("token-version",
                         f"is a version {version[1]} token; this iscsiha reads version 1 "
                         "(run the same iscsiha release on both boxes)")
        raise refuse("token-format", f"does not start with {PREFIX}")
    rest = token[len(PREFIX):]
    bad = [(len(PREFIX) + i + 1, c) for i, c in enumerate(rest)
           if c.upper() not in _ALPHABET and c not in "- "]
    if bad:
        listed = ", ".join(f"{c!r} at character {pos}" for pos, c in bad[:4])
        raise refuse("token-characters",
                     f"has {listed}; a token has only letters A-Z, digits 2-7 and '-' "
                     "(0, 1, 8 and 9 are never used: 0 is O, 8 is B)")
    body = rest.replace("-", "").replace(" ", "").upper()
    family = next((f for f, n in _LENGTHS.items() if n == len(body)), None)
    if family is None:
        raise refuse("token-length",
                     f"has {len(body)} letters and digits after {PREFIX}; a token has "
                     f"{_LENGTHS[4]} (IPv4) or {_LENGTHS[6]} (IPv6): a part is missing "
                     "or doubled")
    try:
        data = base64.b32decode(body + "=" * (-len(body) % 8))
    except binascii.Error as exc:  # unused bits set in the last character
        raise refuse("token-checksum", "does not check out: a character is mistyped") from exc
    payload, check = data[:-CHECK_BYTES], data[-CHECK_BYTES:]
    if _check(payload) != check:
        raise refuse("token-checksum", "does not check out: a character is mistyped")
    size = 4 if family == 4 else 16
    address = ipaddress.ip_address(payload[:size])
    port = int.from_bytes(payload[size:size + 2], "big")
    if port == 0 or address.is_unspecified or address.is_multicast:
        raise refuse("token-content", f"names {address} port {port}, where no box can wait")
    return JoinToken(address, port, payload[size + 2:])


def _check(payload: bytes) -> bytes:
    return hashlib.sha256(b"iscsiha join token\0" + payload).digest()[:CHECK_BYTES]
