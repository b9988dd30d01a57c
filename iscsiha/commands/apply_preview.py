"""`iscsiha apply --dry-run`: what an apply would change, in the admin's terms (volumes,
targets, LUNs, portals, allowed initiators, authentication, placement), read from the
live CIB against the plan; every check of a real apply runs, nothing is changed.

CHAP secrets, which the CIB holds only as references, are compared with this box's
store of them (apply.check)."""

from __future__ import annotations

from iscsiha.commands.apply import Checked
from iscsiha.commands.apply_losses import TargetFacts, secret_resource, target_facts
from iscsiha.model.names import format_size

NO_CHANGE = "nothing to change: the cluster already runs this desired state"


def preview(checked: Checked) -> list[str]:
    c = checked.change
    lines = [f"thin pool {p.name}: create, {format_size(p.size)} in {p.volume_group} on both "
             "boxes" for p in checked.pools.create]
    lines += [f"thin pool {p.name}: grow to {format_size(p.size)}" for p in checked.pools.grow]
    lines += [f"volume {v.name}: create, {format_size(v.size)} "
              + (f"thin in pool {v.pool}" if v.pool else f"in {v.volume_group}")
              + " on both boxes" for v in c.create]
    lines += [f"volume {v.name}: grow to {format_size(v.size)}" for v in checked.grow]
    lines += [f"volume {name}: DELETE with its data on both boxes" for name in c.delete]
    was, will = target_facts(checked.live), target_facts(checked.plan.cib)
    for name in sorted(will.keys() - was.keys()):
        t = will[name]
        lines.append(f"target {name}: create ({t.iqn}), LUNs {t.lun_text}, "
                     f"portals {' '.join(sorted(t.portals)) or 'none'}")
    for name in sorted(was.keys() - will.keys()):
        lines.append(f"target {name}: REMOVE ({was[name].iqn}); its initiators lose "
                     f"LUNs {was[name].lun_text}")
    for name in sorted(was.keys() & will.keys()):
        lines += [f"target {name}: {what}" for what in _target_changes(was[name], will[name])]
        if secret_resource(name) in checked.secrets_changed:
            lines.append(f"target {name}: CHAP secret CHANGES")
    return lines or [NO_CHANGE]


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
