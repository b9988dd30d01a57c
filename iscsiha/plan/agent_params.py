"""The parameters our agents take from the CIB: written by the plan, read by the agents.

One codec for both sides, so the format cannot drift between them.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass

from iscsiha.errors import IscsihaError, Report, bounded, withheld
from iscsiha.model import names
from iscsiha.model.identity import DRBD_MINOR_MAX
from iscsiha.model.names import iscsi_name_problem
from iscsiha.model.types import AuthMode, IPAddress, host_port

SECRET_REF = "lrm://"  # Pacemaker's marker for a parameter kept out of the CIB

# The plan writes /dev/drbdN; the lab's agent tests use LVs and /dev/null directly.
_DEVICE = re.compile(r"/dev(/[A-Za-z0-9._+-]+)+\Z", re.ASCII)
_SERIAL = re.compile(r"[A-Za-z0-9._-]{1,64}\Z", re.ASCII)  # a UUID from lun_identity
_TRUE, _FALSE = ("true", "yes", "1", "on"), ("false", "no", "0", "off")


@dataclass(frozen=True)
class PortalParam:
    address: IPAddress
    port: int

    def __str__(self) -> str:
        return host_port(self.address, self.port)


@dataclass(frozen=True)
class LunParam:
    number: int
    volume: str
    device: str  # /dev/drbdN
    serial: str  # SCSI unit serial; LIO derives the NAA WWN from it

    def __str__(self) -> str:
        return f"{self.number}:{self.volume}:{self.device}:{self.serial}"


@dataclass(frozen=True)
class AuthParams:
    mode: AuthMode
    chap_user: str | None = None
    mutual_user: str | None = None

    def to_params(self) -> list[tuple[str, str]]:
        params = [("auth", self.mode.value)]
        if self.chap_user is not None:
            params += [("chap_user", self.chap_user), ("chap_secret", SECRET_REF)]
        if self.mutual_user is not None:
            params += [("mutual_user", self.mutual_user), ("mutual_secret", SECRET_REF)]
        return params

    @classmethod
    def from_params(cls, params: Mapping[str, str]) -> AuthParams:
        modes = {m.value: m for m in AuthMode}
        mode = modes.get(params.get("auth", "none"))
        if mode is None:
            raise _bad("auth", params.get("auth"), ", ".join(modes))
        needed = {AuthMode.NONE: (), AuthMode.CHAP: ("chap_user", "chap_secret"),
                  AuthMode.MUTUAL_CHAP: ("chap_user", "chap_secret", "mutual_user",
                                         "mutual_secret")}[mode]
        for key in needed:
            if not params.get(key) or params[key] == SECRET_REF:
                raise _bad(key, None, f"set for auth={mode.value} (secrets through lrm://)")
            if key.endswith("_user") and names.chap_user_problem(params[key]):
                raise _bad(key, params[key], names.CHAP_USER_ALLOWED)
            if key.endswith("_secret") and names.chap_secret_problem(params[key]):
                raise _bad(key, withheld(params[key]), names.CHAP_SECRET_ALLOWED)
        return cls(mode, params.get("chap_user") if needed else None,
                   params.get("mutual_user") if mode is AuthMode.MUTUAL_CHAP else None)


@dataclass(frozen=True)
class TargetParams:
    iqn: str
    portals: tuple[PortalParam, ...]
    luns: tuple[LunParam, ...]
    initiators: tuple[str, ...]
    allow_any_initiator: bool
    auth: AuthParams
    reservations: str | None = None  # /dev/drbdN holding the LUNs' SCSI reservations

    def to_params(self) -> list[tuple[str, str]]:
        params = [("iqn", self.iqn), ("portals", encode_portals(self.portals)),
                  ("luns", " ".join(str(lun) for lun in self.luns)),
                  ("initiators", " ".join(self.initiators)),
                  ("allow_any_initiator", "true" if self.allow_any_initiator else "false"),
                  *self.auth.to_params()]
        if self.reservations is not None:
            params.append(("reservations", self.reservations))
        return params

    @classmethod
    def from_params(cls, params: Mapping[str, str]) -> TargetParams:
        iqn = params.get("iqn", "")
        if iscsi_name_problem(iqn):
            raise _bad("iqn", iqn, "an iSCSI name")
        initiators = _words(params.get("initiators", ""))
        for name in initiators:
            if iscsi_name_problem(name):
                raise _bad("initiators", name, "space-separated iSCSI names")
        allow = params.get("allow_any_initiator", "false").lower()
        if allow not in _TRUE + _FALSE:
            raise _bad("allow_any_initiator", allow, ", ".join(_TRUE + _FALSE))
        allow_any = allow in _TRUE
        if not initiators and not allow_any:
            raise _bad("initiators", "", "initiator names, or allow_any_initiator=true")
        reservations = params.get("reservations") or None
        if reservations is not None and not _device_ok(reservations):
            raise _bad("reservations", reservations, "a path under /dev (/dev/drbdN)")
        return cls(iqn, decode_portals(params.get("portals", "")),
                   decode_luns(params.get("luns", "")), initiators, allow_any,
                   AuthParams.from_params(params), reservations)


def encode_portals(portals: tuple[PortalParam, ...]) -> str:
    return " ".join(str(p) for p in portals)


def decode_portals(text: str) -> tuple[PortalParam, ...]:
    out = []
    for token in _words(text):
        host, sep, port_text = token.rpartition(":")
        bracketed = host.startswith("[") and host.endswith("]")
        address = names.parse_ip(host[1:-1] if bracketed else host)
        port = names.parse_decimal(port_text, names.TCP_PORT_MIN, names.TCP_PORT_MAX)
        if (not sep or address is None or port is None
                or bracketed != (address.version == 6)):
            raise _bad("portals", token, "space-separated ADDRESS:PORT ([IPv6]:PORT)")
        out.append(PortalParam(address, port))
    if not out:
        raise _bad("portals", text, "one or more ADDRESS:PORT")
    return tuple(out)


def decode_luns(text: str) -> tuple[LunParam, ...]:
    out = []
    for token in _words(text):
        parts = token.split(":")
        number = names.parse_decimal(parts[0], 0, names.LUN_MAX)
        if (len(parts) != 4 or number is None or names.object_name_problem(parts[1])
                or not _device_ok(parts[2]) or not _SERIAL.match(parts[3])):
            raise _bad("luns", token, "space-separated LUN:VOLUME:/dev/DEVICE:SERIAL, LUN "
                       f"{names.LUN_ALLOWED}, DEVICE a path under /dev")
        out.append(LunParam(number, parts[1], parts[2], parts[3]))
    if not out:
        raise _bad("luns", text, "one or more LUN:VOLUME:/dev/DEVICE:SERIAL")
    if len({lun.number for lun in out}) != len(out):
        raise _bad("luns", text, "each LUN number once")
    return tuple(out)


def _words(text: str) -> tuple[str, ...]:
    """Space-separated items; any other whitespace stays in an item, which is then refused."""
    return tuple(w for w in text.split(" ") if w)


def _device_ok(device: str) -> bool:
    """A plain path under /dev; a /dev/drbdN names a minor DRBD can have."""
    if not _DEVICE.match(device) or any(c in (".", "..") for c in device.split("/")):
        return False
    digits = device.removeprefix("/dev/drbd")
    return digits == device or names.parse_decimal(digits, 0, DRBD_MINOR_MAX) is not None


def _bad(param: str, value: object, allowed: str) -> IscsihaError:
    return IscsihaError([Report("bad-agent-parameter", param, bounded(value), allowed)])
