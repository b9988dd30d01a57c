"""Naming rules: iSCSI names (RFC 3720/3721/3980), object names, LVM names, sizes, numbers.

Every ``*_problem`` function is total: it takes any value (a ``str`` where the name
says so), never raises, and returns None or why the value is refused. They are the
one definition of each rule, for the config loader, the agents and the peer protocol.

Patterns end in ``\\Z`` and are ASCII-only: ``$`` would accept a trailing newline
(``vm\\n`` then becomes a file ``vm\\n.res``) and ``\\d`` accepts digits such as
``²`` or ``٣`` that ``int`` then refuses or misreads.
"""

from __future__ import annotations

import math
import re
from ipaddress import IPv4Address, IPv6Address, ip_address

from iscsiha.errors import IscsihaError
from iscsiha.model.identity import (
    DRBD_MINOR_MAX,
    DRBD_PORT_FIRST,
    DRBD_PORT_LAST,
    DRBD_VOLUME_MAX,
)


def _rule(pattern: str) -> re.Pattern[str]:
    return re.compile(pattern, re.ASCII)


# RFC 3720 3.2.6.3.1: "iqn." yyyy-mm "." reversed domain [":" unique part].
# rtslib-fb rejects a naming authority without a dot (iqn.2026-11.test:x), so we
# require one too: a config that validates must also apply.
_IQN = _rule(
    r"iqn\.(?P<year>[0-9]{4})-(?P<month>[0-9]{2})\."
    r"(?P<authority>[a-z0-9]([a-z0-9-]*[a-z0-9])?(\.[a-z0-9]([a-z0-9-]*[a-z0-9])?)+)"
    r"(:(?P<unique>[a-z0-9.:_-]+))?\Z"
)
_IQN_NO_DOT = _rule(r"iqn\.[0-9]{4}-[0-9]{2}\.[a-z0-9-]+(:|\Z)")
_EUI = _rule(r"eui\.[0-9a-f]{16}\Z")  # RFC 3720 3.2.6.3.2: 64-bit EUI
_NAA = _rule(r"naa\.([0-9a-f]{16}|[0-9a-f]{32})\Z")  # RFC 3980: 64 or 128 bits
ISCSI_NAME_MAX = 223  # RFC 3720 3.2.6.1, in bytes

ISCSI_NAME_ALLOWED = (
    "iqn.YYYY-MM.reversed.domain[:unique] with a dot in the domain "
    "(e.g. iqn.2026-11.com.example:san.vm), eui. and 16 hex digits, or naa. "
    "and 16 or 32 hex digits; lowercase, at most 223 characters"
)


def iscsi_name_problem(name: str) -> str | None:
    """Why ``name`` is not a usable iSCSI name, or None if it is."""
    if not isinstance(name, str):
        return _not_text(name)
    if not name.isascii():
        return "has characters that are not ASCII"
    if len(name) > ISCSI_NAME_MAX:
        return f"is {len(name)} bytes long"
    if name != name.lower():
        return "has upper-case letters (iSCSI compares names lowercased; write them so)"
    if name.startswith("iqn."):
        m = _IQN.match(name)
        if m is None:
            if _IQN_NO_DOT.match(name):
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
OBJECT_NAME = _rule(r"[a-z]([a-z0-9-]{0,30}[a-z0-9])?\Z")
OBJECT_NAME_ALLOWED = (
    "1 to 32 characters: lowercase letters, digits and '-', starting with a letter, "
    "not ending with '-'"
)
RESERVED_OBJECT_NAMES = frozenset({"snapshot", "pvmove"})

# Node names are host names (one RFC 1123 label): Pacemaker knows nodes by uname.
NODE_NAME = _rule(r"[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?\Z")
NODE_NAME_ALLOWED = "a host name label: 1 to 63 lowercase letters, digits and '-'"

# lvm(8) VALID NAMES.
VG_NAME = _rule(r"[A-Za-z0-9+_.][A-Za-z0-9+_.-]{0,126}\Z")
VG_NAME_ALLOWED = "1 to 127 of A-Z a-z 0-9 + _ . -, not starting with '-', not '.' or '..'"

# A host name for the tiebreaker (corosync-qnetd): dotted RFC 1123 labels.
HOST_NAME = _rule(
    r"(?=.{1,253}\Z)[a-z0-9]([a-z0-9-]*[a-z0-9])?(\.[a-z0-9]([a-z0-9-]*[a-z0-9])?)*\Z"
)
HOST_NAME_ALLOWED = "an IP address or host name of the corosync-qnetd server"

CHAP_USER = _rule(r"[\x21-\x7e]{1,255}\Z")
CHAP_USER_ALLOWED = "1 to 255 printable ASCII characters without spaces"
CHAP_SECRET = _rule(r"[\x21-\x7e]{12,16}\Z")
CHAP_SECRET_ALLOWED = (
    "12 to 16 printable ASCII characters without spaces: RFC 3720 asks for at least "
    "96 bits, and the Microsoft iSCSI initiator accepts at most 16 characters"
)
# IPMI 2.0 passwords are at most 20 bytes; ipmitool takes them as one argument.
BMC_PASSWORD = _rule(r"[\x20-\x7e]{1,20}\Z")
BMC_PASSWORD_ALLOWED = "1 to 20 printable ASCII characters (IPMI 2.0 limit)"


def object_name_problem(name: str) -> str | None:
    """Why ``name`` cannot name a volume, target, network or cluster, or None."""
    if not isinstance(name, str):
        return _not_text(name)
    if OBJECT_NAME.match(name) is None:
        return "is not " + OBJECT_NAME_ALLOWED
    if name in RESERVED_OBJECT_NAMES:
        return "is reserved by LVM"
    return None


def node_name_problem(name: str) -> str | None:
    """Why ``name`` cannot name a node (a host name label), or None."""
    if not isinstance(name, str):
        return _not_text(name)
    return None if NODE_NAME.match(name) else "is not " + NODE_NAME_ALLOWED


def vg_name_problem(name: str) -> str | None:
    """Why ``name`` is not a valid LVM volume group name, or None."""
    if not isinstance(name, str):
        return _not_text(name)
    if VG_NAME.match(name) is None or name in (".", ".."):
        return "is not " + VG_NAME_ALLOWED
    return None


def host_name_problem(name: str) -> str | None:
    """Why ``name`` is neither an IP address nor a host name, or None."""
    if not isinstance(name, str):
        return _not_text(name)
    if parse_ip(name) is not None or HOST_NAME.match(name):
        return None
    return "is not " + HOST_NAME_ALLOWED


def chap_user_problem(user: str) -> str | None:
    if not isinstance(user, str):
        return _not_text(user)
    return None if CHAP_USER.match(user) else "is not " + CHAP_USER_ALLOWED


def chap_secret_problem(secret: str) -> str | None:
    """Why a CHAP secret is refused; the reason never quotes the secret."""
    if not isinstance(secret, str):
        return _not_text(secret)
    return None if CHAP_SECRET.match(secret) else "is not " + CHAP_SECRET_ALLOWED


def bmc_password_problem(password: str) -> str | None:
    """Why a BMC password is refused; the reason never quotes the password."""
    if not isinstance(password, str):
        return _not_text(password)
    return None if BMC_PASSWORD.match(password) else "is not " + BMC_PASSWORD_ALLOWED


# -- numbers ---------------------------------------------------------------------------

# Enough digits for any range below, few enough that int() is cheap and never hits
# Python's 4300-digit limit.
_DECIMAL = _rule(r"-?[0-9]{1,20}\Z")

DRBD_MINOR_ALLOWED = f"0 to {DRBD_MINOR_MAX}"
DRBD_PORT_ALLOWED = (
    f"{DRBD_PORT_FIRST} to {DRBD_PORT_LAST} (the DRBD port range the boxes keep open "
    "between each other)"
)
DRBD_VOLUME_ALLOWED = f"0 to {DRBD_VOLUME_MAX}"
TCP_PORT_MIN, TCP_PORT_MAX = 1, 65535
TCP_PORT_ALLOWED = f"{TCP_PORT_MIN} to {TCP_PORT_MAX}"
LUN_MAX = 255  # LIO: 256 LUNs per TPG
LUN_ALLOWED = f"0 to {LUN_MAX}"
# ipmitool -C takes an IPMI 2.0 cipher suite id (0-17).
IPMI_CIPHER_MAX = 17


def parse_decimal(text: str, low: int, high: int) -> int | None:
    """The integer ``text`` spells in ASCII digits if it lies in low..high, else None."""
    if not isinstance(text, str) or _DECIMAL.match(text) is None:
        return None
    value = int(text)
    return value if low <= value <= high else None


def split_host_port(text: str, default_port: int) -> tuple[str, int] | None:
    """HOST, HOST:PORT or [IPv6]:PORT as (host, port); the host is not checked here."""
    host, port = text, default_port
    if text.startswith("["):
        end = text.find("]")
        if end < 0:
            return None
        host, rest = text[1:end], text[end + 1:]
        if rest:
            parsed = parse_decimal(rest[1:], TCP_PORT_MIN, TCP_PORT_MAX)
            if not rest.startswith(":") or parsed is None:
                return None
            port = parsed
    elif text.count(":") == 1:
        host, _, p = text.partition(":")
        parsed = parse_decimal(p, TCP_PORT_MIN, TCP_PORT_MAX)
        if parsed is None:
            return None
        port = parsed
    return host, port


def integer_problem(value: object, low: int, high: int) -> str | None:
    """Why ``value`` is not an int (bool is not one) from ``low`` to ``high``, or None."""
    if isinstance(value, bool) or not isinstance(value, int):
        return f"is {type(value).__name__}, not an integer"
    if not low <= value <= high:
        return f"is outside {low} to {high}"
    return None


def drbd_minor_problem(minor: object) -> str | None:
    return integer_problem(minor, 0, DRBD_MINOR_MAX)


def drbd_port_problem(port: object) -> str | None:
    return integer_problem(port, DRBD_PORT_FIRST, DRBD_PORT_LAST)


def drbd_volume_problem(number: object) -> str | None:
    return integer_problem(number, 0, DRBD_VOLUME_MAX)


def tcp_port_problem(port: object) -> str | None:
    return integer_problem(port, TCP_PORT_MIN, TCP_PORT_MAX)


def lun_problem(number: object) -> str | None:
    return integer_problem(number, 0, LUN_MAX)


TIMEOUT_MAX = 7 * 24 * 3600.0
TIMEOUT_ALLOWED = f"a finite number of seconds from 0 to {TIMEOUT_MAX:.0f} (a week)"


def timeout_problem(seconds: object) -> str | None:
    """Why ``seconds`` is not a usable timeout: nan and inf would wait forever or never."""
    if isinstance(seconds, bool) or not isinstance(seconds, (int, float)):
        return f"is {type(seconds).__name__}, not a number"
    if not math.isfinite(seconds):
        return "is not a finite number"
    if not 0 <= seconds <= TIMEOUT_MAX:
        return f"is outside 0 to {TIMEOUT_MAX:.0f} seconds"
    return None


def check_timeout(seconds: float, field: str = "timeout") -> None:
    """Refuse a timeout before anything starts that would wait on it."""
    problem = timeout_problem(seconds)
    if problem:
        raise IscsihaError.single("bad-timeout", field, seconds, TIMEOUT_ALLOWED, problem)


# -- addresses -------------------------------------------------------------------------

ADDRESS_ALLOWED = "an IPv4 or IPv6 address without a zone (%), e.g. 10.10.0.11"


def parse_ip(text: str) -> IPv4Address | IPv6Address | None:
    """The address ``text`` spells, or None.

    IPv6 zones (``fe80::1%eth0``) are refused: ipaddress accepts any text after the
    ``%``, newlines included, and it would go into corosync and DRBD files.
    """
    if not isinstance(text, str) or len(text) > 45 or not text.isascii() or "%" in text:
        return None
    try:
        return ip_address(text)
    except ValueError:
        return None


def address_problem(text: str) -> str | None:
    return None if parse_ip(text) is not None else "is not " + ADDRESS_ALLOWED


# -- sizes -----------------------------------------------------------------------------

_UNITS = {"K": 1, "M": 2, "G": 3, "T": 4, "P": 5}
SIZE_MAX = 8 * 1024**6  # LVM's limit for a logical volume: 8 EiB
SIZE_ALLOWED = (
    "a number with a unit K, M, G, T or P (or KiB, MiB, ...), powers of 1024 as in "
    "LVM, e.g. 100G or 1.5T; a whole number of MiB, at most 8192P (LVM's limit, 8 EiB)"
)
# Bounded digit counts: a longer number is no size LVM can hold anyway.
_SIZE = _rule(
    r"[ \t]*(?P<int>[0-9]{1,20})(\.(?P<frac>[0-9]{1,20}))?[ \t]*(?P<unit>[KMGTP])(iB)?[ \t]*\Z"
)


def parse_size(text: str) -> int | None:
    """Bytes for a size like ``100G``; None when it is not one (plain or SI units)."""
    if not isinstance(text, str):
        return None
    m = _SIZE.match(text)
    if m is None:
        return None
    frac = m["frac"] or ""
    # Exact integer arithmetic: Decimal's 28-digit context rounded long numbers.
    scaled: int = int(m["int"] + frac) * 1024 ** _UNITS[m["unit"]]
    value, rest = divmod(scaled, int(10 ** len(frac)))
    if rest or value % (1024 * 1024) or value > SIZE_MAX:
        return None
    return value


def size_problem(text: str) -> str | None:
    return None if parse_size(text) is not None else "is not " + SIZE_ALLOWED


def format_size(size: int) -> str:
    for unit, power in sorted(_UNITS.items(), key=lambda kv: -kv[1]):
        if size % (1024**power) == 0:
            return f"{size // 1024**power}{unit}"
    return f"{size}B"


def _not_text(value: object) -> str:
    return f"is {type(value).__name__}, not a string"
