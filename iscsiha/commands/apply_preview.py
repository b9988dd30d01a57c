"""`iscsiha apply --dry-run`: what an apply would change, in the admin's terms (volumes,
targets, LUNs, portals, allowed initiators, authentication, placement), read from the
live CIB against the plan; every check of a real apply runs, nothing is changed.

CHAP secrets are not compared: the CIB holds only references to them."""

from __future__ import annotations

import xml.etree.ElementTree as ET
from dataclasses import dataclass

from iscsiha.commands.apply import Checked
from iscsiha.commands.targets import target_placement
from iscsiha.model.names import format_size
from iscsiha.plan.agent_params import decode_luns, decode_portals
from iscsiha.plan.cib import nvpairs

NO_CHANGE = "nothing to change: the cluster already runs this desired state"


@dataclass(frozen=True)
class TargetFacts:
    iqn: str
    luns: dict[int, str]  # number -> volume
    portals: frozenset[str]
    initiators: frozenset[str]
    allow_any_initiator: str
    auth: str  # mode and user names; secrets are references
    preferred_node: str | None
    failback: str

    @property
    def lun_text(self) -> str:
        return ", ".join(f"{n} ({v})" for n, v in sorted(self.luns.items())) or "none"


def preview(checked: Checked) -> list[str]:
    c = checked.change
    lines = [f"volume {v.name}: create, {format_size(v.size)} in {v.volume_group} on both boxes"
             for v in c.create]
    lines += [f"volume {v.name}: grow to {format_size(v.size)}" for v in checked.grow]
    lines += [f"volume {name}: DELETE with its data on both boxes" for name in c.delete]
    was, will = _targets(checked.live), _targets(checked.plan.cib)
    for name in sorted(will.keys() - was.keys()):
        t = will[name]
        lines.append(f"target {name}: create ({t.iqn}), LUNs {t.lun_text}, "
                     f"portals {' '.join(sorted(t.portals)) or 'none'}")
    for name in sorted(was.keys() - will.keys()):
        lines.append(f"target {name}: REMOVE ({was[name].iqn}); its initiators lose "
                     f"LUNs {was[name].lun_text}")
    for name in sorted(was.keys() & will.keys()):
        lines += [f"target {name}: {what}" for what in _target_changes(was[name], will[name])]
    return lines or [NO_CHANGE]


def _targets(cib_xml: str) -> dict[str, TargetFacts]:
    """Each target's facts as the CIB (live or planned) holds them."""
    cib = ET.fromstring(cib_xml)
    out = {}
    for prim in cib.iter("primitive"):
        rid = prim.get("id", "")
        if not (prim.get("type") == "target" and rid.startswith("target-")
                and rid.endswith("-lio")):
            continue
        name = rid[len("target-"):-len("-lio")]
        params = nvpairs(prim.find("instance_attributes"))
        out[name] = TargetFacts(
            params.get("iqn", ""),
            {lun.number: lun.volume for lun in decode_luns(params.get("luns", ""))},
            frozenset(str(p) for p in decode_portals(params.get("portals", ""))),
            frozenset(params.get("initiators", "").split()),
            params.get("allow_any_initiator", "false"),
            " ".join(f"{k}={params[k]}" for k in ("auth", "chap_user", "mutual_user")
                     if params.get(k)),
            *target_placement(cib, f"target-{name}"))
    return out


def _target_changes(was: TargetFacts, will: TargetFacts) -> list[str]:
    out = []
    for n in sorted(will.luns.keys() | was.luns.keys()):
        if n not in was.luns:
            out.append(f"LUN {n} ({will.luns[n]}) added")
        elif n not in will.luns:
            out.append(f"LUN {n} ({was.luns[n]}) REMOVED: its initiators lose it")
        elif was.luns[n] != will.luns[n]:
            out.append(f"LUN {n} CHANGES from {was.luns[n]} to {will.luns[n]}: its "
                       "initiators see another disk")
    for noun, old, new in (("portal", was.portals, will.portals),
                           ("allowed initiator", was.initiators, will.initiators)):
        out += [f"{noun} {x} added" for x in sorted(new - old)]
        out += [f"{noun} {x} REMOVED" for x in sorted(old - new)]
    for key in ("iqn", "allow_any_initiator", "auth", "preferred_node", "failback"):
        before, after = getattr(was, key), getattr(will, key)
        if before != after:
            out.append(f"{key} {before or 'none'} -> {after or 'none'}")
    return out
