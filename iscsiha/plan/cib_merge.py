"""Merging the plan into a live CIB: what apply sends to Pacemaker.

The appliance owns the resources, constraints, fencing-topology and alerts sections and its
own cluster property set; everything else (nodes, Pacemaker's own properties, defaults,
status) is kept as it is. Inside the constraints section, those that others place
while the cluster runs stay too, as long as every resource they name does: DRBD's
fence-peer handler forbids promoting a stale peer with one, and dropping it would
let a failover promote old data; `crm_resource --move`/`--ban` place the others.
The result is applied as a patch against the exact version it was made from, so a
CIB changed in between refuses the patch instead of losing that change.
"""

from __future__ import annotations

import xml.etree.ElementTree as ET

from iscsiha.errors import IscsihaError, bounded
from iscsiha.model.names import parse_decimal

OWNED_SECTIONS = ("resources", "constraints", "fencing-topology", "alerts")
OWNED_PROPERTY_SET = "iscsiha-options"
# The layout of the sections above, an option in our property set. A release that
# changes what its agents read from the CIB raises it; an older release's apply then
# refuses to overwrite that layout, so a pair halfway through a rolling upgrade is
# changed from the upgraded box only (docs/upgrade.md). A CIB without it predates it.
CIB_LAYOUT_OPTION = "iscsiha-cib-layout"
CIB_LAYOUT = 1
CIB_LAYOUT_MAX = 999
# Id prefixes of constraints placed by crm-fence-peer.sh (drbd-utils) and crm_resource.
FOREIGN_CONSTRAINTS = ("drbd-fence-by-handler-", "cli-prefer-", "cli-ban-")
_RESOURCE_TAGS = ("primitive", "group", "clone", "bundle")
_REFERENCE_ATTRS = ("rsc", "with-rsc", "first", "then")


def merge(live_cib: str, fragment: str) -> str:
    """The live CIB with our sections replaced by the plan's, its epoch bumped; the live
    CIB as it is when that changes nothing (else every apply would change the epoch)."""
    try:
        cib = ET.fromstring(live_cib)
        planned = ET.fromstring(fragment)
    except ET.ParseError as exc:
        raise IscsihaError.single("bad-cib", "CIB", str(exc), "a CIB XML document") from exc
    configuration = cib.find("configuration")
    if cib.tag != "cib" or configuration is None:
        raise IscsihaError.single("bad-cib", "CIB", cib.tag, "a <cib> with <configuration>")
    _check_layout(configuration)
    before = _canonical(configuration)
    for section in OWNED_SECTIONS:
        old = configuration.find(section)
        new = planned.find(section)
        assert new is not None, f"the plan always has <{section}>"
        if section == "constraints" and old is not None:
            new.extend(_foreign_constraints(old, planned, new))
        if old is None:
            configuration.append(new)
        else:
            configuration.insert(list(configuration).index(old), new)
            configuration.remove(old)
    crm_config = configuration.find("crm_config")
    if crm_config is None:
        crm_config = ET.Element("crm_config")
        configuration.insert(0, crm_config)
    for old_set in crm_config.findall(f"cluster_property_set[@id='{OWNED_PROPERTY_SET}']"):
        crm_config.remove(old_set)
    new_set = planned.find(f"crm_config/cluster_property_set[@id='{OWNED_PROPERTY_SET}']")
    assert new_set is not None, "the plan always has its property set"
    crm_config.append(new_set)
    if _canonical(configuration) == before:
        return live_cib
    cib.set("epoch", next_epoch(cib))
    cib.set("num_updates", "0")
    return ET.tostring(cib, encoding="unicode")


def live_layout(configuration: ET.Element) -> int | None:
    """The layout the live CIB was written in; None when it predates the option."""
    values = [nv.get("value", "") for nv in configuration.iterfind(
        f"crm_config/cluster_property_set[@id='{OWNED_PROPERTY_SET}']/nvpair"
        f"[@name='{CIB_LAYOUT_OPTION}']")]
    if not values:
        return None
    layout = parse_decimal(values[0], 0, CIB_LAYOUT_MAX) if len(values) == 1 else None
    if layout is None:
        raise IscsihaError.single("bad-cib", f"CIB option {CIB_LAYOUT_OPTION}", bounded(values),
                                  f"one whole number 0 to {CIB_LAYOUT_MAX}")
    return layout


def _check_layout(configuration: ET.Element) -> None:
    layout = live_layout(configuration)
    if layout is not None and layout > CIB_LAYOUT:
        raise IscsihaError.single(
            "cib-layout-newer", f"CIB option {CIB_LAYOUT_OPTION}", str(layout),
            f"layout {CIB_LAYOUT} or older (what this release writes)",
            "a newer release wrote the cluster's configuration: change it from the "
            "upgraded box, or finish the upgrade; nothing was changed")


def next_epoch(cib: ET.Element) -> str:
    """The epoch after the CIB's own: a configuration change must raise it."""
    epoch = parse_decimal(cib.get("epoch", "0"), 0, 2**31 - 1)  # Pacemaker's is an int
    if epoch is None:
        raise IscsihaError.single("bad-cib", "cib epoch", bounded(cib.get("epoch")),
                                  "a number from 0 to 2147483647", "cannot be raised")
    return str(epoch + 1)


def _canonical(el: ET.Element) -> str:
    """``el`` without the layout: whitespace between elements and attribute order."""
    return ET.canonicalize(ET.tostring(el, encoding="unicode"), strip_text=True)


def _foreign_constraints(live: ET.Element, planned: ET.Element,
                         constraints: ET.Element) -> list[ET.Element]:
    """The live constraints others placed that name only resources the plan keeps (a
    constraint naming a resource that is gone would make the CIB invalid) and that
    the planned ``constraints`` do not already hold."""
    kept = {el.get("id") for tag in _RESOURCE_TAGS for el in planned.iter(tag)}
    held = {el.get("id") for el in constraints}
    return [el for el in live
            if el.get("id", "").startswith(FOREIGN_CONSTRAINTS)
            and el.get("id") not in held and _references(el) <= kept]


def _references(constraint: ET.Element) -> set[str | None]:
    named = {constraint.get(attr) for attr in _REFERENCE_ATTRS if constraint.get(attr)}
    return named | {ref.get("id") for ref in constraint.iter("resource_ref")}
