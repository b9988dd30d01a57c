"""Edits of the desired state's plain tables, one per console command.

Each edit checks what only it can name well (which object is meant, whether it
exists); every value is left to the library's validation of the whole config,
which runs after the edit and reports every problem.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

from iscsiha.errors import IscsihaError
from iscsiha.model import names
from iscsiha.model.fields import (
    ALLOW_ANY_INITIATOR,
    AUTH,
    AUTH_KEYS,
    CHAP_KEYS,
    DISCOVERY_AUTH,
    FAILBACK,
    INITIATORS,
    IQN,
    LUN,
    LUNS,
    MODE,
    MUTUAL_SECRET,
    MUTUAL_USER,
    NAME,
    POOL,
    PORTALS,
    PREFERRED_NODE,
    SECRET,
    SIZE,
    TARGETS,
    VOLUME,
    VOLUME_GROUP,
    VOLUMES,
)
from iscsiha.model.load import LUN_MAX
from iscsiha.model.types import ISCSI_PORT, AuthMode

Data = dict[str, Any]
Edit = Callable[[Data], None]
SECRET_KEYS = frozenset({SECRET, MUTUAL_SECRET})
# The target's plain settings; its lists and tables have commands of their own.
TARGET_SETTINGS = (IQN, PREFERRED_NODE, FAILBACK, ALLOW_ANY_INITIATOR)
# What each auth mode leaves unused, in the order they are checked.
_UNUSED_BY_MODE = {AuthMode.NONE.value: CHAP_KEYS,
                   AuthMode.CHAP.value: (MUTUAL_USER, MUTUAL_SECRET)}


def tables(data: Mapping[str, Any], key: str) -> list[dict[str, Any]]:
    value = data.get(key)
    return [t for t in value if isinstance(t, dict)] if isinstance(value, list) else []


def named(data: Mapping[str, Any], key: str) -> list[str]:
    return [t[NAME] for t in tables(data, key) if isinstance(t.get(NAME), str)]


def find(data: Mapping[str, Any], key: str, name: str, what: str) -> dict[str, Any]:
    for table in tables(data, key):
        if table.get(NAME) == name:
            return table
    raise IscsihaError.single(f"unknown-{what}", what, name,
                              ", ".join(named(data, key)) or f"no {what} yet")


def _absent(data: Mapping[str, Any], key: str, name: str, what: str) -> None:
    if name in named(data, key):
        raise IscsihaError.single(f"duplicate-{what}-name", what, name,
                                  f"a name no {what} has yet (there are: "
                                  f"{', '.join(named(data, key))})", "already exists")


def exported_by(data: Mapping[str, Any], volume: str) -> list[str]:
    """'target vm LUN 1' for each LUN that exports ``volume``."""
    return [f"target {t.get(NAME)} LUN {lun.get(LUN)}" for t in tables(data, TARGETS)
            for lun in t.get(LUNS) or [] if isinstance(lun, dict)
            and lun.get(VOLUME) == volume]


def portal_key(text: str) -> str:
    """ADDRESS:PORT for a portal written with or without its port."""
    if text.startswith("["):
        return text if "]:" in text else f"{text}:{ISCSI_PORT}"
    if text.count(":") == 1:
        return text
    if ":" in text:  # a bare IPv6 address
        return f"[{text}]:{ISCSI_PORT}"
    return f"{text}:{ISCSI_PORT}"


# -- volumes ----------------------------------------------------------------------------

def create_volume(name: str, size: str, volume_group: str | None,
                  pool: str | None = None) -> Edit:
    def edit(data: Data) -> None:
        _absent(data, VOLUMES, name, "volume")
        volume: dict[str, Any] = {NAME: name, SIZE: size}
        if volume_group is not None:
            volume[VOLUME_GROUP] = volume_group
        if pool is not None:
            volume[POOL] = pool
        data.setdefault(VOLUMES, []).append(volume)
    return edit


def delete_volume(name: str) -> Edit:
    def edit(data: Data) -> None:
        volume = find(data, VOLUMES, name, "volume")
        users = exported_by(data, name)
        if users:
            raise IscsihaError.single("volume-in-use", "volume", name,
                                      "a volume no target exports",
                                      f"is exported by {', '.join(users)}: delete the LUN first")
        data[VOLUMES].remove(volume)
    return edit


def resize_volume(name: str, size: str) -> Edit:
    def edit(data: Data) -> None:
        volume = find(data, VOLUMES, name, "volume")
        old = names.parse_size(str(volume.get(SIZE, "")))
        new = names.parse_size(size)
        if old is not None and new is not None and new < old:
            raise IscsihaError.single(
                "volume-shrink", f"volume {name} {SIZE}", size,
                f"at least the current {volume[SIZE]}",
                "shrinking would cut off data; make a new, smaller volume instead")
        volume[SIZE] = size
    return edit


# -- targets ----------------------------------------------------------------------------

def default_iqn(data: Mapping[str, Any], name: str) -> str | None:
    """An IQN for target ``name`` in the style of the existing targets', if there are any."""
    for target in tables(data, TARGETS):
        iqn = target.get(IQN)
        if not isinstance(iqn, str) or ":" not in iqn:
            continue
        head, _, unique = iqn.partition(":")
        if "." in unique:
            return f"{head}:{unique.rsplit('.', 1)[0]}.{name}"
        return f"{head}:{name}"
    return None


def create_target(name: str, portal: str, preferred_node: str, volume: str,
                  initiator: str | None, iqn: str | None, failback: str | None,
                  allow_any_initiator: bool) -> Edit:
    def edit(data: Data) -> None:
        _absent(data, TARGETS, name, "target")
        chosen = iqn or default_iqn(data, name)
        if chosen is None:
            raise IscsihaError.single("missing", f"target {name} {IQN}", None,
                                      names.ISCSI_NAME_ALLOWED,
                                      "is needed for the first target (later ones follow it)")
        target: dict[str, Any] = {NAME: name, IQN: chosen, PORTALS: [portal],
                                  PREFERRED_NODE: preferred_node}
        if failback is not None:
            target[FAILBACK] = failback
        target[INITIATORS] = [initiator] if initiator else []
        if allow_any_initiator:
            target[ALLOW_ANY_INITIATOR] = True
        target[LUNS] = [{LUN: 0, VOLUME: volume}]
        data.setdefault(TARGETS, []).append(target)
    return edit


def delete_target(name: str) -> Edit:
    def edit(data: Data) -> None:
        data[TARGETS].remove(find(data, TARGETS, name, "target"))
    return edit


def set_target(name: str, settings: Mapping[str, object]) -> Edit:
    def edit(data: Data) -> None:
        target = find(data, TARGETS, name, "target")
        for key, value in settings.items():
            if key not in TARGET_SETTINGS:
                raise IscsihaError.single("unknown-key", f"target {name}", key,
                                          ", ".join(TARGET_SETTINGS))
            if value is None or (value is False and key == ALLOW_ANY_INITIATOR):
                target.pop(key, None)
            else:
                target[key] = value
    return edit


def parse_lun(text: str | int, field: str) -> int:
    number = text if isinstance(text, int) else None
    if isinstance(text, str):
        digits = text.removeprefix("lun")
        number = int(digits) if digits.isdigit() else None
    if number is None or not 0 <= number <= LUN_MAX:
        raise IscsihaError.single("bad-lun", field, text, f"0 to {LUN_MAX} (or lun0 ...)")
    return number


def create_lun(target_name: str, volume: str, lun: int | None) -> Edit:
    def edit(data: Data) -> None:
        target = find(data, TARGETS, target_name, "target")
        luns = target.setdefault(LUNS, [])
        used = {x.get(LUN) for x in luns if isinstance(x, dict)}
        number = lun if lun is not None else next(n for n in range(LUN_MAX + 2) if n not in used)
        luns.append({LUN: number, VOLUME: volume})
    return edit


def delete_lun(target_name: str, lun: int) -> Edit:
    def edit(data: Data) -> None:
        target = find(data, TARGETS, target_name, "target")
        luns = target.get(LUNS) or []
        match = [x for x in luns if isinstance(x, dict) and x.get(LUN) == lun]
        if not match:
            raise IscsihaError.single(
                "unknown-lun", f"target {target_name} LUN", lun,
                ", ".join(str(x.get(LUN)) for x in luns if isinstance(x, dict)) or "no LUN")
        luns.remove(match[0])
    return edit


def create_acl(target_name: str, initiator: str) -> Edit:
    def edit(data: Data) -> None:
        target = find(data, TARGETS, target_name, "target")
        target.setdefault(INITIATORS, []).append(initiator)
    return edit


def delete_acl(target_name: str, initiator: str) -> Edit:
    def edit(data: Data) -> None:
        target = find(data, TARGETS, target_name, "target")
        initiators = target.get(INITIATORS) or []
        if initiator not in initiators:
            raise IscsihaError.single("unknown-initiator", f"target {target_name} initiator",
                                      initiator, ", ".join(initiators) or "no initiator yet")
        initiators.remove(initiator)
    return edit


def create_portal(target_name: str, portal: str) -> Edit:
    def edit(data: Data) -> None:
        target = find(data, TARGETS, target_name, "target")
        target.setdefault(PORTALS, []).append(portal)
    return edit


def delete_portal(target_name: str, portal: str) -> Edit:
    def edit(data: Data) -> None:
        target = find(data, TARGETS, target_name, "target")
        portals = target.get(PORTALS) or []
        match = [p for p in portals if isinstance(p, str) and portal_key(p) == portal_key(portal)]
        if not match:
            raise IscsihaError.single("unknown-portal", f"target {target_name} portal", portal,
                                      ", ".join(map(str, portals)) or "no portal yet")
        portals.remove(match[0])
    return edit


# -- authentication ---------------------------------------------------------------------

def auth_table(data: Data, target_name: str | None, create: bool = False) -> dict[str, Any]:
    """A target's auth table, or the discovery auth's when ``target_name`` is None."""
    owner = data if target_name is None else find(data, TARGETS, target_name, "target")
    key = DISCOVERY_AUTH if target_name is None else AUTH
    table = owner.get(key)
    if not isinstance(table, dict):
        table = {MODE: AuthMode.NONE.value}
        if create:
            owner[key] = table
    return table


def set_auth(target_name: str | None, settings: Mapping[str, str]) -> Edit:
    def edit(data: Data) -> None:
        where = DISCOVERY_AUTH if target_name is None else f"target {target_name} {AUTH}"
        for key in settings:
            if key not in AUTH_KEYS:
                raise IscsihaError.single("unknown-key", where, key, ", ".join(AUTH_KEYS))
        table = auth_table(data, target_name, create=True)
        for key, value in settings.items():
            if value:
                table[key] = value
            else:
                table.pop(key, None)
        # What a mode does not use is dropped, so switching down never leaves
        # settings behind that validation would call unused.
        mode = table.get(MODE)
        unused = _UNUSED_BY_MODE.get(str(mode), ())
        for key in unused:
            if settings.get(key):
                raise IscsihaError.single("unused-setting", f"{where} {key}", key,
                                          f"not set for mode '{mode}'",
                                          "has no effect in this mode")
            table.pop(key, None)
    return edit
