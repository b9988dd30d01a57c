"""Merging the plan into a live CIB: what apply sends to Pacemaker.

The appliance owns the resources and constraints sections and its own cluster
property set; everything else (nodes, Pacemaker's own properties, defaults,
status) is kept as it is. The result is applied as a patch against the exact
version it was made from, so a CIB changed in between refuses the patch instead
of losing that change.
"""

from __future__ import annotations

import xml.etree.ElementTree as ET

from iscsiha.errors import IscsihaError

OWNED_SECTIONS = ("resources", "constraints")
OWNED_PROPERTY_SET = "iscsiha-options"


def merge(live_cib: str, fragment: str) -> str:
    """The live CIB with our sections replaced by the plan's; epoch bumped."""
    try:
        cib = ET.fromstring(live_cib)
        planned = ET.fromstring(fragment)
    except ET.ParseError as exc:
        raise IscsihaError.single("bad-cib", "CIB", str(exc), "a CIB XML document") from exc
    configuration = cib.find("configuration")
    if cib.tag != "cib" or configuration is None:
        raise IscsihaError.single("bad-cib", "CIB", cib.tag, "a <cib> with <configuration>")
    for section in OWNED_SECTIONS:
        old = configuration.find(section)
        new = planned.find(section)
        assert new is not None, f"the plan always has <{section}>"
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
    cib.set("epoch", str(int(cib.get("epoch", "0")) + 1))
    cib.set("num_updates", "0")
    return ET.tostring(cib, encoding="unicode")
