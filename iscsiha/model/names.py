"""Naming rules: iSCSI names (RFC 3720/3721/3980), object names, LVM names, sizes."""

from __future__ import annotations

import re
from decimal import Decimal, InvalidOperation

# RFC 3720 3.2.6.3.1: "iqn." yyyy-mm "." reversed domain [":" unique part].
# rtslib-fb rejects a naming authority without a dot (iqn.2026-11.test:x), so we
# require one too: a config that validates must also apply.
_IQN = re.compile(
    r"^iqn\.(?P<year>\d{4})-(?P<month>\d{2})\."
    r"(?P<authority>[a-z0-9]([a-z0-9-]*[a-z0-9])?(\.[a-z0-9]([a-z0-9-]*[a-z0-9])?)+)"
    r"(:(?P<unique>[a-z0-9.:_-]+))?$"
)
_EUI = re.compile(r"^eui\.[0-9a-f]{16}$")  # RFC 3720 3.2.6.3.2: 64-bit EUI
_NAA = re.compile(r"^naa\.([0-9a-f]{16}|[0-9a-f]{32})$")  # RFC 3980: 64 or 128 bits
ISCSI_NAME_MAX = 223  # RFC 3720 3.2.6.1, in bytes

ISCSI_NAME_ALLOWED = (
    "iqn.YYYY-MM.reversed.domain[:unique] with a dot in the domain "
    "(e.g. iqn.2026-11.com.example:san.vm), eui. and 16 hex digits, or naa. "
    "and 16 or 32 hex digits; lowercase, at most 223 characters"
)


def iscsi_name_problem(name: str) -> str | None:
    """Why ``name`` is not a usable iSCSI name, or None if it is."""
    if len(name.encode()) > ISCSI_NAME_MAX:
        return f"is {len(name.encode())} bytes long"
    if name != name.lower():
        return "has upper-case letters (iSCSI compares names lowercased; write them so)"
    if name.startswith("iqn."):
        m = _IQN.match(name)
        if m is None:
            if re.match(r"^iqn\.\d{4}-\d{2}\.[a-z0-9-]+(:|$)", name):
                return "has a naming authority without a dot, which rtslib-fb rejects"
            return "is not of the form iqn.YYYY-MM.reversed.domain[:unique]"
        if not 1 <= int(m["month"]) <= 12:
            return f"has month {m['month']}"
        return None
    if name.startswith("eui."):
        return None if _EUI.match(name) else "is not eui. followed by 16 hex digits"
    if name.startswith("naa."):
        return None if _NAA.match(name) else "is not naa. followed by 16 or 32 hex digits"
    return "does not start with iqn., eui. or naa."


# Object names end up as LVM LV names, DRBD resource names, CIB ids and shell
# paths; this is the common subset (no underscore: LVM reserves _mlog, _rimage...).
OBJECT_NAME = re.compile(r"^[a-z]([a-z0-9-]{0,30}[a-z0-9])?$")
OBJECT_NAME_ALLOWED = (
    "1 to 32 characters: lowercase letters, digits and '-', starting with a letter, "
    "not ending with '-'"
)
RESERVED_OBJECT_NAMES = frozenset({"snapshot", "pvmove"})

# Node names are host names (one RFC 1123 label): Pacemaker knows nodes by uname.
NODE_NAME = re.compile(r"^[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?$")
NODE_NAME_ALLOWED = "a host name label: 1 to 63 lowercase letters, digits and '-'"

# lvm(8) VALID NAMES.
VG_NAME = re.compile(r"^[A-Za-z0-9+_.][A-Za-z0-9+_.-]{0,126}$")
VG_NAME_ALLOWED = "1 to 127 of A-Z a-z 0-9 + _ . -, not starting with '-', not '.' or '..'"

CHAP_USER = re.compile(r"^[\x21-\x7e]{1,255}$")
CHAP_USER_ALLOWED = "1 to 255 printable ASCII characters without spaces"
CHAP_SECRET = re.compile(r"^[\x21-\x7e]{12,16}$")
CHAP_SECRET_ALLOWED = (
    "12 to 16 printable ASCII characters without spaces: RFC 3720 asks for at least "
    "96 bits, and the Microsoft iSCSI initiator accepts at most 16 characters"
)

_UNITS = {"K": 1, "M": 2, "G": 3, "T": 4, "P": 5}
SIZE_ALLOWED = (
    "a number with a unit K, M, G, T or P (or KiB, MiB, ...), powers of 1024 as in "
    "LVM, e.g. 100G or 1.5T; a whole number of MiB"
)
_SIZE = re.compile(r"^\s*(?P<num>\d+(\.\d+)?)\s*(?P<unit>[KMGTP])(iB)?\s*$")


def parse_size(text: str) -> int | None:
    """Bytes for a size like ``100G``; None when it is not one (plain or SI units)."""
    m = _SIZE.match(text)
    if m is None:
        return None
    try:
        value = Decimal(m["num"]) * (1024 ** _UNITS[m["unit"]])
    except InvalidOperation:
        return None
    if value != value.to_integral_value() or value % (1024 * 1024):
        return None
    return int(value)


def format_size(size: int) -> str:
    for unit, power in sorted(_UNITS.items(), key=lambda kv: -kv[1]):
        if size % (1024**power) == 0:
            return f"{size // 1024**power}{unit}"
    return f"{size}B"
