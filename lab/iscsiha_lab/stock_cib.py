"""The stock ClusterLabs agents' CIB for one target, to compare our agents against.

`iscsiha-lab failover-bench` exports the same DRBD volumes once through our agents
(`iscsiha apply`) and once through resource-agents' own: a group of
ocf:heartbeat:IPaddr2, ocf:heartbeat:iSCSITarget and one ocf:heartbeat:iSCSILogicalUnit
per LUN (implementation lio-t: targetcli), colocated with and ordered after the
promotion of the target's DRBD clone, the way ClusterLabs and LINBIT document it.
portblock is left out: it needs iptables, and the lab's UML kernel has neither the
ip_tables module nor an nf_tables it can add a table to (`nft add table ip t` fails
with "Operation not supported").

Pure functions: the XML to add with `cibadmin --create`, and what to delete again.
"""

from __future__ import annotations

import xml.etree.ElementTree as ET
from collections.abc import Iterable
from dataclasses import dataclass
from ipaddress import IPv4Address

from iscsiha.errors import IscsihaError
from iscsiha.model.load import LUN_MAX
from iscsiha.model.types import Failback
from iscsiha.plan.cib import (
    AGENT_OPS,
    PREFERRED_SCORE,
    STICKINESS,
    TARGET_PRIORITY,
    with_promoted_drbd,
)

PORTBLOCK = ("omitted: the lab kernel has no usable iptables/nf_tables; the address "
             "starts after the LUNs instead")
IMPLEMENTATION = "lio-t"  # targetcli; "lio" needs lio-utils, which Debian no longer has
# The constraints a group can appear in, and the attributes that name it.
_REFERENCES = {"rsc_location": ("rsc",), "rsc_colocation": ("rsc", "with-rsc"),
               "rsc_order": ("first", "then"), "rsc_ticket": ("rsc",)}


@dataclass(frozen=True)
class StockLun:
    number: int
    volume: str  # a volume of the DRBD resource ``StockTarget.drbd``
    device: str  # /dev/drbdN


@dataclass(frozen=True)
class StockTarget:
    group: str  # the group's id; members are <group>-ip, <group>-target, <group>-lun<N>
    drbd: str  # the DRBD resource holding its LUNs: clone drbd-<drbd>-clone (plan.cib)
    iqn: str
    address: IPv4Address  # the floating portal
    prefixlen: int
    nic: str  # the storage interface on both boxes
    initiator: str  # the one initiator IQN allowed (an ACL, as our targets have)
    chap_user: str
    chap_secret: str  # one-way CHAP: iSCSITarget has no mutual CHAP parameters
    luns: tuple[StockLun, ...]
    preferred_node: str


def member_ids(target: StockTarget) -> list[str]:
    """The group's members in start order: the address last, standing in for portblock.
    Started before its LUNs, it let the initiator log in to a target without LUN 0,
    where LIO's read-only virtual LUN 0 left the initiator's disk write-protected and
    32 KiB long until a rescan (every later write failed, in the lab)."""
    return [f"{target.group}-target",
            *(f"{target.group}-lun{lun.number}" for lun in _sorted_luns(target)),
            f"{target.group}-ip"]


def resources(target: StockTarget, started: bool) -> ET.Element:
    """``<resources>`` holding the group, for `cibadmin --create --scope resources`.

    Not ``started``: the group comes in with target-role Stopped, so Pacemaker places
    nothing before its constraints exist (a LUN started on the box where DRBD is
    Secondary fails, and the failure counts)."""
    luns = _sorted_luns(target)
    root = ET.Element("resources")
    group = ET.SubElement(root, "group", id=target.group)
    # The same placement rules as our targets (failback "manual"), so both sets
    # stay where a move or a failover put them.
    meta = [("resource-stickiness", str(STICKINESS[Failback.MANUAL])),
            ("priority", str(TARGET_PRIORITY))]
    if not started:
        meta.append(("target-role", "Stopped"))
    _nvset(group, "meta_attributes", f"{target.group}-meta", meta)
    target_id, *lun_ids, ip_id = member_ids(target)
    _primitive(group, target_id, "iSCSITarget", [
        ("implementation", IMPLEMENTATION), ("iqn", target.iqn),
        # No portals: lio-t then listens on 0.0.0.0:3260 (the floating address included).
        # With the floating portal the agent's start failed in the lab, "Could not create
        # NetworkPortal": its `targetcli /iscsi set global auto_add_default_portal=false`
        # did not hold for its next targetcli call (targetcli-fb 2.1.53 printed
        # "Global pref auto_add_default_portal=true" right after), so 0.0.0.0:3260 came
        # first and took the port.
        ("allowed_initiators", target.initiator),
        ("incoming_username", target.chap_user), ("incoming_password", target.chap_secret)])
    for rid, lun in zip(lun_ids, luns, strict=True):
        # No allowed_initiators here: the target's ACL exists before any LUN, and
        # targetcli maps each new LUN into existing ACLs (auto_add_mapped_luns).
        # scsi_sn stays at its default, a hash of the resource id: the same on both boxes.
        _primitive(group, rid, "iSCSILogicalUnit", [
            ("implementation", IMPLEMENTATION), ("target_iqn", target.iqn),
            ("lun", str(lun.number)), ("path", lun.device), ("liot_bstype", "block")])
    _primitive(group, ip_id, "IPaddr2", [
        ("ip", str(target.address)), ("cidr_netmask", str(target.prefixlen)),
        ("nic", target.nic)])
    return root


def constraints(target: StockTarget) -> ET.Element:
    """``<constraints>`` for `cibadmin --create --scope constraints` (one CIB update):
    the preferred node as for our targets, and the group with the promoted DRBD clone,
    started after the promotion."""
    root = ET.Element("constraints")
    gid = target.group
    ET.SubElement(root, "rsc_location", id=f"{gid}-prefers-{target.preferred_node}", rsc=gid,
                  node=target.preferred_node, score=str(PREFERRED_SCORE))
    with_promoted_drbd(root, gid, target.drbd)
    return root


def present(cib_xml: str, group: str) -> bool:
    """Whether the CIB holds a group with this id."""
    return any(g.get("id") == group for g in _parse(cib_xml).iter("group"))


def removal(cib_xml: str, group: str) -> tuple[ET.Element, ET.Element]:
    """(``<constraints>``, ``<resources>``) naming what to delete with `cibadmin --delete`:
    every constraint that refers to the group (ours, and any cli-prefer a failed move
    left), then the group with its members. Constraints first: none may refer to a
    resource that is gone."""
    cib = _parse(cib_xml)
    refs = ET.Element("constraints")
    for section in cib.iter("constraints"):
        for el in section:
            if any(el.get(attr) == group for attr in _REFERENCES.get(el.tag, ())):
                # cibadmin deletes the first element with this tag and these attributes.
                ET.SubElement(refs, el.tag, id=el.get("id", ""))
    rscs = ET.Element("resources")
    ET.SubElement(rscs, "group", id=group)
    return refs, rscs


def _sorted_luns(target: StockTarget) -> list[StockLun]:
    luns = sorted(target.luns, key=lambda lun: lun.number)
    numbers = [lun.number for lun in luns]
    if not luns or len(set(numbers)) != len(numbers) or not all(
            0 <= n <= LUN_MAX for n in numbers):
        raise IscsihaError.single("bad-stock-luns", "stock target LUNs", numbers,
                                  f"one or more distinct LUN numbers, 0 to {LUN_MAX}")
    return luns


def _parse(cib_xml: str) -> ET.Element:
    try:
        return ET.fromstring(cib_xml)
    except ET.ParseError as exc:
        raise IscsihaError.single("bad-cib", "CIB", cib_xml[:40], "a CIB XML document "
                                  "(cibadmin --query)", f"cannot be parsed: {exc}") from exc


def _primitive(parent: ET.Element, rid: str, kind: str,
               params: Iterable[tuple[str, str]]) -> None:
    prim = ET.SubElement(parent, "primitive",
                         {"id": rid, "class": "ocf", "provider": "heartbeat", "type": kind})
    _nvset(prim, "instance_attributes", f"{rid}-params", params)
    # Our agents' operation timeouts, so neither set loses a start to a shorter one.
    ops = ET.SubElement(prim, "operations")
    for name, interval, timeout, _role in AGENT_OPS:
        ET.SubElement(ops, "op", id=f"{rid}-{name}-{interval}", name=name, interval=interval,
                      timeout=timeout)


def _nvset(parent: ET.Element, tag: str, sid: str, pairs: Iterable[tuple[str, str]]) -> None:
    el = ET.SubElement(parent, tag, id=sid)
    for name, value in pairs:
        ET.SubElement(el, "nvpair", id=f"{sid}-{name}", name=name, value=value)
