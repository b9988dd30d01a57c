"""Resource maintenance on a DRBD clone: Pacemaker takes no action on it and runs no
monitor while its DRBD state is changed under it (split-brain recovery, volumes
joining or leaving a target's resource)."""

from __future__ import annotations

import xml.etree.ElementTree as ET
from collections.abc import Callable

from iscsiha.commands.cluster_env import Cib
from iscsiha.errors import IscsihaError, Report
from iscsiha.plan.cib_merge import next_epoch

Progress = Callable[[str], None]
_TRUE = {"true", "yes", "on", "y", "1"}  # Pacemaker's spellings of a true boolean


def hold(pacemaker: Cib, clone: str, progress: Progress) -> bool:
    """Put ``clone`` in maintenance unless Pacemaker already leaves it alone; True if we did."""
    cib = ET.fromstring(pacemaker.query())
    if _left_alone(cib, clone):
        progress(f"{clone}: already left alone by Pacemaker (maintenance or unmanaged)")
        return False
    progress(f"{clone}: maintenance on, so Pacemaker leaves DRBD to this procedure")
    _set_maintenance(pacemaker, clone, True)
    return True


def release(pacemaker: Cib, clone: str, progress: Progress) -> list[Report]:
    """Hand ``clone`` back to Pacemaker; the reports when that failed (never raises)."""
    try:
        _set_maintenance(pacemaker, clone, False)
    except IscsihaError as exc:
        hint = f"crm_resource --resource {clone} --meta --delete-parameter maintenance"
        progress(f"{clone}: could not end maintenance: run `{hint}`")
        return [Report("maintenance-left-on", "resource", clone, "managed by Pacemaker again",
                       f"is still in maintenance: run `{hint}`"), *exc.reports]
    progress(f"{clone}: maintenance off, Pacemaker manages it again")
    return []


def _left_alone(cib: ET.Element, clone: str) -> bool:
    el = cib.find(f".//clone[@id='{clone}']")
    if el is None:
        return True  # not in the cluster's hands at all
    meta: dict[str, str] = {}
    for owner in (el, el.find("primitive")):
        for attrs in owner.findall("meta_attributes") if owner is not None else []:
            meta |= {nv.get("name", ""): nv.get("value", "") for nv in attrs.iter("nvpair")}
    props = {nv.get("name", ""): nv.get("value", "")
             for nv in cib.iterfind(".//crm_config//nvpair")}
    return (meta.get("maintenance", "").lower() in _TRUE
            or meta.get("is-managed", "true").lower() not in _TRUE
            or props.get("maintenance-mode", "").lower() in _TRUE)


def _set_maintenance(pacemaker: Cib, clone: str, on: bool) -> None:
    pacemaker.update(lambda live: with_maintenance(live, clone, on))


def with_maintenance(cib_xml: str, clone: str, on: bool) -> str:
    """``cib_xml`` with ``clone``'s maintenance meta attribute set (on) or dropped (off)."""
    cib = ET.fromstring(cib_xml)
    el = cib.find(f".//clone[@id='{clone}']")
    if el is None:
        raise IscsihaError.single("unknown-resource", "resource", clone,
                                  "a DRBD clone in the CIB", "is not in the CIB")
    meta = el.find("meta_attributes")
    if meta is None:
        meta = ET.Element("meta_attributes", id=f"{clone}-meta")
        el.insert(0, meta)
    for nv in [nv for nv in meta if nv.get("name") == "maintenance"]:
        meta.remove(nv)
    if on:
        ET.SubElement(meta, "nvpair", id=f"{meta.get('id')}-maintenance", name="maintenance",
                      value="true")
    # As apply's merge does: a configuration change is a new epoch.
    cib.set("epoch", next_epoch(cib))
    cib.set("num_updates", "0")
    return ET.tostring(cib, encoding="unicode")
