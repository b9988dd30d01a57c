"""What initiators would lose through an apply (pure): targets, LUNs, allowed
initiators, portals, the target's name, its authentication and CHAP secrets.

Read from the live CIB against the planned one, as `apply --dry-run` reads them; the
CHAP secrets, which the CIB holds only as references, are compared by the caller
against this box's store and passed in as the resources whose secret changes.
A shrinking volume is no loss here: apply refuses it outright (apply_checks).
"""

from __future__ import annotations

import xml.etree.ElementTree as ET
from collections.abc import Collection
from dataclasses import dataclass

from iscsiha.commands.targets import target_placement
from iscsiha.plan.agent_params import decode_luns, decode_portals
from iscsiha.plan.cib import nvpairs


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


@dataclass(frozen=True)
class Loss:
    """One thing a target's initiators would lose, said in the admin's terms."""

    target: str
    text: str

    def __str__(self) -> str:
        return f"target {self.target}: {self.text}"


def target_facts(cib_xml: str) -> dict[str, TargetFacts]:
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


def secret_resource(target: str) -> str:
    """The resource whose lrm:// secrets are ``target``'s CHAP secrets."""
    return f"target-{target}-lio"


def losses(live_cib: str, planned_cib: str,
           secrets_changed: Collection[str] = ()) -> tuple[Loss, ...]:
    """What initiators of the live targets would lose; empty when nothing they use goes.

    ``secrets_changed``: resources (``secret_resource``) whose CHAP secret changes."""
    was, will = target_facts(live_cib), target_facts(planned_cib)
    out = [Loss(name, f"REMOVED ({was[name].iqn}); its initiators lose LUNs "
                      f"{was[name].lun_text}") for name in sorted(was.keys() - will.keys())]
    for name in sorted(was.keys() & will.keys()):
        out += [Loss(name, text) for text in _lost(was[name], will[name])]
        if secret_resource(name) in secrets_changed:
            out.append(Loss(name, "CHAP secret changes: initiators with the old one cannot "
                                  "log in again"))
    return tuple(out)


def _lost(was: TargetFacts, will: TargetFacts) -> list[str]:
    out = []
    for n, volume in sorted(was.luns.items()):
        if n not in will.luns:
            out.append(f"LUN {n} ({volume}) REMOVED: its initiators lose it")
        elif will.luns[n] != volume:
            out.append(f"LUN {n} CHANGES from {volume} to {will.luns[n]}: its initiators "
                       "see another disk")
    out += [f"portal {p} REMOVED" for p in sorted(was.portals - will.portals)]
    if was.allow_any_initiator != "true":
        out += [f"allowed initiator {i} REMOVED"
                for i in sorted(was.initiators - will.initiators)]
    elif will.allow_any_initiator != "true":
        out.append("allow_any_initiator true -> false: only the listed initiators stay")
    if was.iqn != will.iqn:
        out.append(f"iqn {was.iqn} -> {will.iqn}: initiators lose the old target")
    if was.auth != will.auth:
        out.append(f"auth {was.auth or 'none'} -> {will.auth or 'none'}: initiators must "
                   "log in with the new settings")
    return out
