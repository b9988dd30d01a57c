"""Stable identities: DRBD minor and port per volume, SCSI identity per LUN.

Both boxes must present the same disk, and a re-plan must never renumber an
existing volume, so minors and ports are kept from the previous allocation (read
back from the running cluster's CIB) and only new volumes get fresh ones.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterable, Mapping
from dataclasses import dataclass

from iscsiha.model.types import Volume

DRBD_MINOR_MAX = (1 << 20) - 1  # DRBD's MINORMASK
DRBD_PORT_FIRST = 7789  # DRBD's customary first port
DRBD_PORT_LAST = 7999

# Fixed forever: changing it would change every LUN's serial and WWN, and
# multipath on the hypervisors would see new disks.
_LUN_NAMESPACE = uuid.UUID("5b0f6c1e-2d4a-5e8b-9c41-7a3f0d2e6b19")
LIO_COMPANY_ID = "001405"  # LIO's IEEE company id, used in its NAA 6h designator


@dataclass(frozen=True)
class DrbdSlot:
    minor: int
    port: int

    @property
    def device(self) -> str:
        return f"/dev/drbd{self.minor}"


@dataclass(frozen=True)
class LunIdentity:
    serial: str  # SCSI VPD 0x80 unit serial, written to LIO's wwn/vpd_unit_serial
    naa: str  # the NAA 6h WWN LIO derives from that serial (VPD 0x83)
    product: str  # SCSI INQUIRY product id, at most 16 characters


def allocate_drbd(
    volumes: Iterable[Volume], previous: Mapping[str, DrbdSlot] | None = None
) -> dict[str, DrbdSlot]:
    """Minor and port for each volume: pinned first, then previous, then lowest free.

    ``volumes`` must already be validated (pinned values unique and in range).
    """
    volumes = list(volumes)
    previous = previous or {}
    slots: dict[str, DrbdSlot] = {}
    used_minors = {v.drbd_minor for v in volumes if v.drbd_minor is not None}
    used_ports = {v.drbd_port for v in volumes if v.drbd_port is not None}
    # Previous slots are kept unless a pinned value in this config now takes them.
    kept: dict[str, DrbdSlot] = {}
    for v in volumes:
        old = previous.get(v.name)
        if old is None:
            continue
        minor = v.drbd_minor if v.drbd_minor is not None else old.minor
        port = v.drbd_port if v.drbd_port is not None else old.port
        if (v.drbd_minor is None and minor in used_minors) or (
            v.drbd_port is None and port in used_ports
        ):
            continue
        kept[v.name] = DrbdSlot(minor, port)
        used_minors.add(minor)
        used_ports.add(port)
    for v in volumes:
        if v.name in kept:
            slots[v.name] = kept[v.name]
            continue
        minor = v.drbd_minor if v.drbd_minor is not None else _lowest_free(used_minors, 0)
        port = v.drbd_port if v.drbd_port is not None else _lowest_free(used_ports, DRBD_PORT_FIRST)
        used_minors.add(minor)
        used_ports.add(port)
        slots[v.name] = DrbdSlot(minor, port)
    return slots


def _lowest_free(used: set[int], first: int) -> int:
    n = first
    while n in used:
        n += 1
    return n


def lun_identity(target_iqn: str, volume: str) -> LunIdentity:
    """SCSI identity of a volume exported by a target, the same on both boxes."""
    serial = str(uuid.uuid5(_LUN_NAMESPACE, f"{target_iqn}/{volume}"))
    return LunIdentity(serial=serial, naa=naa_from_serial(serial), product=volume[:16])


def naa_from_serial(serial: str) -> str:
    """The NAA 6h designator LIO builds from a unit serial.

    LIO (target_core_spc.c, spc_gen_naa_6h_vendor_specific) puts NAA type 6, its
    24-bit company id, then the first 25 hex digits of the unit serial, skipping
    anything that is not a hex digit.
    """
    digits = "".join(c for c in serial.lower() if c in "0123456789abcdef")[:25]
    return "naa.6" + LIO_COMPANY_ID + digits.ljust(25, "0")
