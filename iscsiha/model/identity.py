"""Stable identities: DRBD resources per target, SCSI identity per LUN.

Each target's LUNs are the volumes of one DRBD resource (named after the target), so
a move is one demote and one promote whatever the LUN count. Both boxes must present
the same disk, and a re-plan must never renumber an existing volume, so minors,
volume numbers and ports are kept from the previous allocation (read back from the
running cluster's CIB) and only new ones are allocated.
"""

from __future__ import annotations

import dataclasses
import uuid
from collections.abc import Mapping
from dataclasses import dataclass, field

from iscsiha.errors import IscsihaError
from iscsiha.model.types import Config

DRBD_MINOR_MAX = (1 << 20) - 1  # DRBD's MINORMASK
# Every target's resource needs a port of its own in this range: the range is what
# the boxes keep open between each other, so a pinned port must lie in it too.
DRBD_PORT_FIRST = 7789  # DRBD's customary first port
DRBD_PORT_LAST = 7999
DRBD_VOLUME_MAX = 65535  # drbd.conf(5): volume numbers 0 to 65535
# The volume of a target's resource that holds its LUNs' SCSI reservations (LIO's
# APTPL files), so they move with the target: the last number, never a LUN's. The
# 8.4.11 module refuses 65535 ("requested volume id out of range", measured in the lab).
RESERVATIONS_VOLUME = DRBD_VOLUME_MAX - 1
RESERVATIONS_SIZE = 8 << 20  # bytes: an ext4 of a few APTPL files, each under 1 KiB per key

# Fixed forever: changing it would change every LUN's serial and WWN, and
# multipath on the hypervisors would see new disks.
_LUN_NAMESPACE = uuid.UUID("5b0f6c1e-2d4a-5e8b-9c41-7a3f0d2e6b19")
LIO_COMPANY_ID = "001405"  # LIO's IEEE company id, used in its NAA 6h designator


@dataclass(frozen=True)
class DrbdSlot:
    """One exported volume inside its target's DRBD resource."""

    number: int  # DRBD's volume number within the resource
    minor: int

    @property
    def device(self) -> str:
        return f"/dev/drbd{self.minor}"


@dataclass(frozen=True)
class DrbdResource:
    """A target's DRBD resource: its port, its volumes (volume name -> slot), and the
    minor of its reservations volume (None for a target made before there was one)."""

    port: int
    volumes: Mapping[str, DrbdSlot] = field(default_factory=dict)
    reservations: int | None = None

    @property
    def reservations_slot(self) -> DrbdSlot | None:
        if self.reservations is None:
            return None
        return DrbdSlot(RESERVATIONS_VOLUME, self.reservations)


def reservations_lv(target: str) -> str:
    """The LV under a target's reservations volume: a '.' no volume name may hold."""
    return f"{target}.pr"


@dataclass(frozen=True)
class LunIdentity:
    serial: str  # SCSI VPD 0x80 unit serial, written to LIO's wwn/vpd_unit_serial
    naa: str  # the NAA 6h WWN LIO derives from that serial (VPD 0x83)
    product: str  # SCSI INQUIRY product id, at most 16 characters


def allocate_drbd(config: Config, previous: Mapping[str, DrbdResource] | None = None
                  ) -> dict[str, DrbdResource]:
    """Target -> its resource: pinned values first, then previous ones, then lowest free.

    A volume keeps its slot only while the same target exports it. ``config`` must
    already be validated (pinned values unique and in range).
    """
    previous = previous or {}
    exported = {lun.volume: t.name for t in config.targets for lun in t.luns}
    minors = _kept(
        {v.name: v.drbd_minor for v in config.volumes if v.drbd_minor is not None},
        {name: slot.minor for target, res in previous.items()
         for name, slot in res.volumes.items() if exported.get(name) == target})
    ports = _kept({t.name: t.drbd_port for t in config.targets if t.drbd_port is not None},
                  {t: res.port for t, res in previous.items()})
    # Values the previous allocation held stay taken even where this plan drops them:
    # the dropped resource's file is still on the boxes until the apply has finished,
    # and drbdadm refuses every command while two files claim one minor or port.
    used_minors = set(minors.values()) | {slot.minor for res in previous.values()
                                          for slot in res.volumes.values()}
    used_minors |= {res.reservations for res in previous.values()
                    if res.reservations is not None}
    used_ports = set(ports.values()) | {res.port for res in previous.values()}
    out: dict[str, DrbdResource] = {}
    for target in config.targets:
        if target.name not in ports:
            ports[target.name] = _lowest_free(used_ports, DRBD_PORT_FIRST, DRBD_PORT_LAST,
                                              "drbd-ports-exhausted", "targets",
                                              f"{target.name} gets no DRBD port")
        old = previous.get(target.name, DrbdResource(0)).volumes
        numbers = {name: old[name].number for name in old if exported.get(name) == target.name}
        used_numbers = set(numbers.values())
        slots: dict[str, DrbdSlot] = {}
        for lun in sorted(target.luns, key=lambda lun: lun.number):
            if lun.volume not in minors:
                minors[lun.volume] = _lowest_free(used_minors, 0, DRBD_MINOR_MAX,
                                                  "drbd-minors-exhausted", "volumes",
                                                  f"{lun.volume} gets no DRBD minor")
            if lun.volume not in numbers:
                numbers[lun.volume] = _lowest_free(used_numbers, 0, RESERVATIONS_VOLUME - 1,
                                                   "drbd-volumes-exhausted", target.name,
                                                   f"{lun.volume} gets no DRBD volume number")
            slots[lun.volume] = DrbdSlot(numbers[lun.volume], minors[lun.volume])
        out[target.name] = DrbdResource(ports[target.name], slots,
                                        previous.get(target.name, DrbdResource(0)).reservations)
    # A new target gets its reservations volume (after every LUN's minor); a running
    # one made before there was one keeps running without (re-creating it adds one).
    for target in config.targets:
        if target.name not in previous:
            out[target.name] = dataclasses.replace(out[target.name], reservations=_lowest_free(
                used_minors, 0, DRBD_MINOR_MAX, "drbd-minors-exhausted", "targets",
                f"{target.name} gets no DRBD minor for its reservations"))
    return out


def _kept(pinned: Mapping[str, int], previous: Mapping[str, int]) -> dict[str, int]:
    """Pinned values, then the previous values no pin took."""
    kept = dict(pinned)
    used = set(kept.values())
    for key, value in previous.items():
        if key not in kept and value not in used:
            kept[key] = value
            used.add(value)
    return kept


def volume_slots(resources: Mapping[str, DrbdResource]) -> dict[str, DrbdSlot]:
    """Volume -> its slot, over every target's resource."""
    return {name: slot for res in resources.values() for name, slot in res.volumes.items()}


def _lowest_free(used: set[int], first: int, last: int, code: str, field: str,
                 message: str) -> int:
    """The lowest value from ``first`` to ``last`` not in ``used``, which then holds it."""
    n = first
    while n in used:
        n += 1
    if n > last:
        taken = sum(first <= u <= last for u in used)
        raise IscsihaError.single(code, field, taken, f"at most {last - first + 1} in use "
                                  f"({first} to {last}), including the previous plan's",
                                  f"all are taken: {message}")
    used.add(n)
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
