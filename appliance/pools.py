"""/pools: LVM thin pools, one of the same size on each box, for thin volumes
(`/volumes create ... pool=NAME`; docs/thin.md)."""

from __future__ import annotations

from typing import Any

from iscsiha.console.alerts import yes_no
from iscsiha.console.base import ConsoleNode, Summary, count
from iscsiha.console.completion import matching, sizes
from iscsiha.console.edits import Data, find, named, tables
from iscsiha.console.state import State
from iscsiha.errors import IscsihaError
from iscsiha.model import names
from iscsiha.model.fields import (
    FILL_ALERT_PERCENT,
    NAME,
    OVERCOMMIT,
    POOL,
    POOLS,
    SIZE,
    VOLUME_GROUP,
    VOLUMES,
)
from iscsiha.model.types import DEFAULT_POOL_FILL_PERCENT


def pool_names(state: State) -> list[str]:
    return named(state.data_or_empty(), POOLS)


def _thin_volumes(data: Data, pool: str) -> list[str]:
    return [str(v.get(NAME)) for v in tables(data, VOLUMES) if v.get(POOL) == pool]


def _percent(text: str) -> Any:
    """A whole number as the model wants it; anything else as typed, for the model's
    report to name."""
    return int(text) if text.isdigit() and len(text) < 4 else text


class PoolsNode(ConsoleNode):
    def __init__(self, parent: ConsoleNode, state: State) -> None:
        super().__init__("pools", parent, state)

    def child_names(self) -> list[str]:
        return pool_names(self.state)

    def make_child(self, name: str) -> ConsoleNode:
        return PoolNode(name, self, self.state)

    def summary(self) -> Summary:
        return count(len(self.children), "thin pool"), None

    def ui_command_create(self, name: str, size: str, volume_group: str | None = None,
                          overcommit: str | None = None,
                          fill_alert_percent: str | None = None) -> None:
        """
        Creates a thin pool: an LVM thin pool of that size on both boxes. Its
        thin volumes (`/volumes create ... pool=NAME`) take space only as they
        are written, and a guest's TRIM gives it back. Applied at once.

        PARAMETERS
        ==========

        name
        ----
        1 to 32 lowercase letters, digits and '-', starting with a letter; not
        the name of a volume in the same volume group.

        size
        ----
        The pool's data space: 500G, 2T, ... (its metadata takes up to twice
        128M more from the volume group). Pools grow, never shrink.

        volume_group
        ------------
        The LVM volume group on both boxes; default the cluster's volume_group.

        overcommit
        ----------
        yes: thin volumes may add up to more than the pool (a guest can then
        fill the pool before its own disk, and writes fail). Default no.

        fill_alert_percent
        ------------------
        50 to 99: data or metadata use that raises pool-filling (default 80).

        EXAMPLE
        =======
        create name=thin size=500G

        SEE ALSO
        ========
        /volumes create /pools/NAME resize
        """
        over = None if overcommit is None else yes_no(OVERCOMMIT, overcommit)

        def edit(data: Data) -> None:
            if name in named(data, POOLS):
                raise IscsihaError.single("duplicate-pool-name", "pool", name,
                                          "a name no pool has yet", "already exists")
            pool: dict[str, Any] = {NAME: name, SIZE: size}
            if volume_group is not None:
                pool[VOLUME_GROUP] = volume_group
            if over is not None:
                pool[OVERCOMMIT] = over
            if fill_alert_percent is not None:
                pool[FILL_ALERT_PERCENT] = _percent(fill_alert_percent)
            data.setdefault(POOLS, []).append(pool)

        self.state.change(edit)
        self.say(f"created thin pool {name} ({size})")

    def ui_complete_create(self, parameters: dict[str, str], text: str,
                           current_param: str) -> list[str]:
        if current_param == "size":
            return sizes(text)
        if current_param == "overcommit":
            return matching(["yes", "no"], text)
        return []

    def ui_command_delete(self, name: str) -> None:
        """
        Takes a thin pool out of the desired state. A pool that thin volumes
        use cannot be: delete them first. Its LV stays on both boxes, empty,
        for `lvremove VG/NAME` by hand (apply never removes a pool: lvremove
        would take any LV in it along).

        PARAMETERS
        ==========

        name
        ----
        The pool.

        EXAMPLE
        =======
        delete name=thin

        SEE ALSO
        ========
        create
        """
        def edit(data: Data) -> None:
            pool = find(data, POOLS, name, "pool")
            users = _thin_volumes(data, name)
            if users:
                raise IscsihaError.single("pool-in-use", "pool", name,
                                          "a pool no volume uses",
                                          f"holds thin volumes {', '.join(users)}: delete "
                                          "them first")
            data[POOLS].remove(pool)
            if not data[POOLS]:
                del data[POOLS]

        self.state.change(edit)
        self.say(f"deleted thin pool {name} from the desired state (its LV stays on both "
                 "boxes)")

    def ui_complete_delete(self, parameters: dict[str, str], text: str,
                           current_param: str) -> list[str]:
        return matching(pool_names(self.state), text) if current_param == "name" else []


class PoolNode(ConsoleNode):
    def __init__(self, name: str, parent: ConsoleNode, state: State) -> None:
        super().__init__(name, parent, state)

    def _pool(self, data: Data) -> dict[str, Any]:
        return find(data, POOLS, self.name, "pool")

    def summary(self) -> Summary:
        data = self.state.data_or_empty()
        pool = self._pool(data)
        thin = _thin_volumes(data, self.name)
        text = (f"{pool.get(SIZE)}, {count(len(thin), 'thin volume')}"
                + (", overcommit" if pool.get(OVERCOMMIT) else ""))
        status = self.state.status_or_none()
        found = [] if status is None else [p for p in status.pools if p.name == self.name]
        used = [f"data {p.data_percent:.1f}% on {p.node}" for p in found
                if p.data_percent is not None]
        limit = pool.get(FILL_ALERT_PERCENT, DEFAULT_POOL_FILL_PERCENT)
        full = any(max(p.data_percent or 0, p.metadata_percent or 0) >= limit
                   for p in found if isinstance(limit, int))
        return (f"{text}; {', '.join(used)}" if used else text), (not full) if found else None

    def ui_command_resize(self, size: str) -> None:
        """
        Grows the pool's data space on both boxes (lvextend). Pools never
        shrink.

        PARAMETERS
        ==========

        size
        ----
        The new size, larger than the current one.

        EXAMPLE
        =======
        resize 1T
        """
        def edit(data: Data) -> None:
            pool = self._pool(data)
            old, new = names.parse_size(str(pool.get(SIZE, ""))), names.parse_size(size)
            if old is not None and new is not None and new < old:
                raise IscsihaError.single("pool-shrink", f"pool {self.name} {SIZE}", size,
                                          f"at least the current {pool[SIZE]}",
                                          "thin pools cannot shrink")
            pool[SIZE] = size

        self.state.change(edit)
        self.say(f"thin pool {self.name} is now {size}")

    def ui_complete_resize(self, parameters: dict[str, str], text: str,
                           current_param: str) -> list[str]:
        return sizes(text) if current_param == "size" else []

    def ui_command_overcommit(self, allow: str) -> None:
        """
        Whether the pool's thin volumes may add up to more than the pool.

        PARAMETERS
        ==========

        allow
        -----
        yes or no.

        EXAMPLE
        =======
        overcommit allow=yes
        """
        value = yes_no("allow", allow)

        def edit(data: Data) -> None:
            self._pool(data)[OVERCOMMIT] = value

        self.state.change(edit)
        self.say(f"thin pool {self.name}: overcommit {'allowed' if value else 'refused'}")

    def ui_complete_overcommit(self, parameters: dict[str, str], text: str,
                               current_param: str) -> list[str]:
        return matching(["yes", "no"], text) if current_param == "allow" else []

    def ui_command_threshold(self, percent: str) -> None:
        """
        Sets how full the pool (data or metadata) may get before the
        pool-filling alert.

        PARAMETERS
        ==========

        percent
        -------
        50 to 99 (default 80).

        EXAMPLE
        =======
        threshold percent=90
        """
        value = _percent(percent)

        def edit(data: Data) -> None:
            self._pool(data)[FILL_ALERT_PERCENT] = value

        self.state.change(edit)
        self.say(f"thin pool {self.name}: alert at {percent} %")
