"""The console tree's root, nodes, volumes and networks (/cluster: iscsiha.console.cluster)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from iscsiha import audit
from iscsiha.commands.config import validate
from iscsiha.commands.support_bundle import DEFAULT_SINCE, checked_since
from iscsiha.console import edits
from iscsiha.console.alerts import AlertsNode
from iscsiha.console.base import ConsoleNode, Summary, count, parse_timeout
from iscsiha.console.box import BoxNode
from iscsiha.console.cluster import ClusterNode
from iscsiha.console.completion import matching, sizes, volume_names
from iscsiha.console.edits import find, named, tables
from iscsiha.console.files import read_text, write_secret
from iscsiha.console.pools import PoolsNode, pool_names
from iscsiha.console.state import State, parse
from iscsiha.console.targets import TargetsNode
from iscsiha.errors import IscsihaError
from iscsiha.model import names
from iscsiha.model.fields import (
    ADDRESS,
    ADDRESSES,
    BMC,
    CLUSTER,
    NAME,
    NETWORKS,
    NODES,
    POOL,
    ROLE,
    SIZE,
    SUBNET,
    VOLUME_GROUP,
    VOLUMES,
)
from iscsiha.model.load import DEFAULT_VOLUME_GROUP
from iscsiha.status_report import Health, assess
from iscsiha.views import replicating, replication_text, status_lines, timeline_lines


class RootNode(ConsoleNode):
    def __init__(self, shell: Any, state: State) -> None:
        super().__init__("/", None, state, shell)
        ClusterNode(self, state)
        NodesNode(self, state)
        VolumesNode(self, state)
        PoolsNode(self, state)
        TargetsNode(self, state)
        NetworksNode(self, state)
        BoxNode(self, state)
        AlertsNode(self, state)

    def summary(self) -> Summary:
        error = self.state.load_error
        if error is not None:
            report = error.reports[0]
            return f"desired state unreadable: {report.field}: {report.message}", False
        name = f"cluster {self.state.data_or_empty().get(CLUSTER, {}).get(NAME, '?')}"
        status = self.state.status_or_none()
        if status is None:
            return f"{name}, {Health.UNKNOWN.word.upper()}: the cluster could not be asked", None
        health, reasons = assess(status)  # the verdict `iscsiha status` gives
        return (f"{name}, {health.word.upper()}" + "".join(f"; {r}" for r in reasons),
                health is Health.HEALTHY)

    def ui_command_status(self, timeline: str | None = None) -> None:
        """
        Shows the running cluster: each node online or not, quorum, the fence
        devices, where each target runs (and whether all of it started) with
        its initiators' sessions, and each volume's DRBD role on each node with
        this box's view of its replication (and a resync's progress). The same
        as `iscsiha status`.

        PARAMETERS
        ==========

        timeline
        --------
        yes: also the last failover or move, from both boxes' journals: when
        the peer was lost, fenced, each target promoted and served again, and
        its first initiator back. The same as `iscsiha status --timeline`.

        EXAMPLE
        =======
        status
        status timeline=yes

        SEE ALSO
        ========
        ls /targets/NAME move
        """
        show_timeline = timeline_wanted(timeline)
        state = self.state.status()
        for line in status_lines(state):
            self.say(line)
        if show_timeline:
            self.say("")
            for line in timeline_lines(self.state.backend.timeline(
                    {t.name: t.iqn for t in state.targets})):
                self.say(line)

    def ui_command_audit(self, since: str | None = None) -> None:
        """
        Shows this box's audit log: each change made through the console or
        `iscsiha` on either box (the peer's marked as a copy), with when, who,
        the command, its result and the desired state's diff. Secrets never
        appear in it. The same as `iscsiha audit`.

        PARAMETERS
        ==========

        since
        -----
        Only records from this time on: an ISO date or time, UTC unless it
        gives an offset (2026-12-01, 2026-12-01T08:00).

        EXAMPLE
        =======
        audit since=2026-12-01

        SEE ALSO
        ========
        status
        """
        found = self.state.backend.audit(audit.parse_since(since, "since"))
        for rec in found:
            if rec is not None:
                self.say(audit.shown(rec))
        unreadable = sum(rec is None for rec in found)
        if unreadable:
            self.say(f"({unreadable} line(s) of the log could not be read as records)")

    def ui_complete_status(self, parameters: dict[str, str], text: str,
                           current_param: str) -> list[str]:
        return matching(["yes", "no"], text) if current_param == "timeline" else []

    def ui_command_shell(self) -> None:
        """
        Opens a root shell on this box, for what the console does not cover
        (logs, hardware, a look at DRBD or LIO). Changes made there by hand
        are not in the desired state: the next apply may undo them. `exit`
        returns to the console.

        EXAMPLE
        =======
        shell

        SEE ALSO
        ========
        status
        """
        self.say("root shell on this box; `exit` returns to the console")
        self.state.backend.root_shell()

    def ui_command_supportbundle(self, since: str | None = None,
                                 output: str | None = None) -> None:
        """
        Collects what a maintainer needs to look into a problem from both
        boxes: the cluster's state and configuration, fencing history, DRBD,
        LIO, corosync and the tiebreaker, the journals, the versions and the
        desired state, into one .tar.gz (mode 0600). Every secret is removed
        (passwords, CHAP secrets, keys). A box that does not answer is noted
        in the bundle. The same as `iscsiha support-bundle`.

        PARAMETERS
        ==========

        since
        -----
        The journal from then on: YYYY-MM-DD, today, yesterday, or a time
        back from now such as 6h or 2d (default 2d).

        output
        ------
        The file to write (default /var/tmp/iscsiha-support-NODE-TIME.tar.gz).

        EXAMPLE
        =======
        supportbundle
        supportbundle since=6h output=/root/case-1234.tar.gz

        SEE ALSO
        ========
        status
        """
        since = since or DEFAULT_SINCE
        checked_since(since)  # refused here, not after minutes of collecting
        path, size = self.state.backend.support_bundle(since, output, self.state.progress)
        self.say(f"wrote {path} ({size} bytes): send it to your maintainer")

    def ui_complete_supportbundle(self, parameters: dict[str, str], text: str,
                                  current_param: str) -> list[str]:
        if current_param == "since":
            return matching(["6h", "1d", "2d", "7d", "today", "yesterday"], text)
        return []

    def ui_command_saveconfig(self, file: str | None = None) -> None:
        """
        Saves the desired state: without a file, as a new backup in the backup
        folder (the last 10 are kept; every change also keeps the state before it
        there); with a file, as a copy in that file (mode 0600: it holds secrets).

        PARAMETERS
        ==========

        file
        ----
        Where to write the copy; leave it out for a backup.

        EXAMPLE
        =======
        saveconfig
        saveconfig /root/san-before-upgrade.toml

        SEE ALSO
        ========
        restoreconfig
        """
        text = self.state.backend.load_desired()
        if file is None:
            self.say(f"saved a backup: {self.state.backups.save(text)}")
        else:
            write_secret(Path(file), text)
            self.say(f"saved the desired state to {file}")

    def ui_command_restoreconfig(self, file: str, confirm: str | None = None) -> None:
        """
        Makes a saved desired state (a backup or any desired-state file) the
        desired state again: it is validated, applied to the cluster and saved.
        Volumes it does not have are deleted with their data on both boxes, so
        this asks first.

        PARAMETERS
        ==========

        file
        ----
        The file to restore; TAB lists the backups.

        confirm
        -------
        yes: do not ask.

        EXAMPLE
        =======
        restoreconfig /etc/iscsiha/backup/desired-20261101-120000.toml

        SEE ALSO
        ========
        saveconfig
        """
        text = read_text(Path(file))
        config, _ = validate(text, file)
        try:
            previous: str | None = self.state.backend.load_desired()
        except IscsihaError:
            previous = None  # a box with no desired state yet
        old = set(named(parse(previous, "desired state"), VOLUMES)) if previous else set()
        deleted = sorted(old - {v.name for v in config.volumes})
        question = f"Replace the desired state with {file} and apply it"
        if deleted:
            question += (f", deleting volume{'s' if len(deleted) > 1 else ''} "
                         f"{', '.join(deleted)} and their data on both boxes")
        self.state.confirm(question + "?", confirm, "restoreconfig", file)
        changes = self.state.replace(text, previous, frozenset(deleted))
        self.say(f"restored {file}: {len(changes.create)} volume(s) created, "
                 f"{len(changes.grow)} grown, {len(changes.delete)} deleted")

    def ui_complete_restoreconfig(self, parameters: dict[str, str], text: str,
                                  current_param: str) -> list[str]:
        if current_param == "file":
            return matching((str(p) for p in self.state.backups.list()), text)
        if current_param == "confirm":
            return matching(["yes"], text)
        return []


class NodesNode(ConsoleNode):
    def __init__(self, parent: ConsoleNode, state: State) -> None:
        super().__init__("nodes", parent, state)

    def child_names(self) -> list[str]:
        return named(self.state.data_or_empty(), NODES)

    def make_child(self, name: str) -> ConsoleNode:
        return NodeNode(name, self, self.state)

    def summary(self) -> Summary:
        return count(len(self.children), "node"), None


class NodeNode(ConsoleNode):
    def __init__(self, name: str, parent: ConsoleNode, state: State) -> None:
        super().__init__(name, parent, state)
        self.define_config_group_param("node", ADDRESSES, "string",
                                       "Its address on each network.", writable=False)
        self.define_config_group_param("node", BMC, "string",
                                       "Its BMC's address (for fencing).", writable=False)

    def table(self) -> dict[str, Any]:
        return find(self.state.data_or_empty(), NODES, self.name, "node")

    def ui_getgroup_node(self, param: str) -> Any:
        if param == BMC:
            return str(self.table().get(BMC, {}).get(ADDRESS))
        return ", ".join(f"{k} {v}" for k, v in (self.table().get(param) or {}).items())

    def summary(self) -> Summary:
        addresses = self.ui_getgroup_node(ADDRESSES)
        status = self.state.status_or_none()
        online = dict(status.nodes).get(self.name) if status else None
        shown = {True: "online", False: "OFFLINE", None: "status unknown"}[online]
        if status is not None and self.name in status.standby:
            return f"{shown}, in standby; {addresses}", False
        return f"{shown}; {addresses}", online

    def ui_command_standby(self, timeout: str | None = None) -> None:
        """
        Puts this box in standby for maintenance: its targets move to the other
        box (each with the pause of a planned move) and stay there. Refused when
        the other box is offline or in standby.

        PARAMETERS
        ==========

        timeout
        -------
        Seconds to wait for the cluster to settle (default 300).

        EXAMPLE
        =======
        standby timeout=600

        SEE ALSO
        ========
        unstandby
        """
        self._standby(True, timeout)

    def ui_command_unstandby(self, timeout: str | None = None) -> None:
        """
        Brings this box back from standby: targets with failback=auto return
        to it, the others stay where they run.

        PARAMETERS
        ==========

        timeout
        -------
        Seconds to wait for the cluster to settle (default 300).

        EXAMPLE
        =======
        unstandby

        SEE ALSO
        ========
        standby
        """
        self._standby(False, timeout)

    def _standby(self, on: bool, timeout: str | None) -> None:
        seconds = parse_timeout(timeout)
        targets = self.state.backend.standby(self.name, on, seconds, self.state.progress)
        for t in targets:
            self.say(f"target {t.name} on {', '.join(t.running_on) or 'no node'}")


class VolumesNode(ConsoleNode):
    def __init__(self, parent: ConsoleNode, state: State) -> None:
        super().__init__("volumes", parent, state)

    def child_names(self) -> list[str]:
        return named(self.state.data_or_empty(), VOLUMES)

    def make_child(self, name: str) -> ConsoleNode:
        return VolumeNode(name, self, self.state)

    def summary(self) -> Summary:
        total = sum(names.parse_size(str(v.get(SIZE))) or 0
                    for v in tables(self.state.data_or_empty(), VOLUMES))
        return f"{count(len(self.children), 'volume')}, {names.format_size(total)}", None

    def ui_command_create(self, name: str, size: str, volume_group: str | None = None,
                          pool: str | None = None) -> None:
        """
        Creates a volume: an LVM logical volume of that size on both boxes,
        mirrored by DRBD. It is applied to the cluster at once; export it with
        `/targets/NAME/luns create volume=NAME`.

        PARAMETERS
        ==========

        name
        ----
        1 to 32 lowercase letters, digits and '-', starting with a letter.

        size
        ----
        A number with a unit K, M, G, T or P, powers of 1024 as in LVM
        (100G is 100 GiB); at least 16M.

        volume_group
        ------------
        The LVM volume group on both boxes; default the cluster's volume_group.

        pool
        ----
        A thin pool (/pools): the volume is a thin volume of it, in its volume
        group, taking space only as it is written. A volume stays thin or thick.

        EXAMPLE
        =======
        create name=db size=100G
        create name=vdi size=200G pool=thin

        SEE ALSO
        ========
        delete /volumes/NAME resize
        """
        self.state.change(edits.create_volume(name, size, volume_group, pool))
        self.say(f"created {'thin ' if pool else ''}volume {name} ({size})")

    def ui_complete_create(self, parameters: dict[str, str], text: str,
                           current_param: str) -> list[str]:
        if current_param == "size":
            return sizes(text)
        if current_param == "volume_group":
            data = self.state.data_or_empty()
            groups = {str(v.get(VOLUME_GROUP)) for v in tables(data, VOLUMES)
                      if v.get(VOLUME_GROUP)}
            groups.add(str(data.get(CLUSTER, {}).get(VOLUME_GROUP, DEFAULT_VOLUME_GROUP)))
            return matching(groups, text)
        if current_param == "pool":
            return matching(pool_names(self.state), text)
        return []

    def ui_command_delete(self, name: str, confirm: str | None = None) -> None:
        """
        Deletes a volume and its data on both boxes. A volume that a target
        exports cannot be deleted: delete its LUN first. Asks before deleting.

        PARAMETERS
        ==========

        name
        ----
        The volume.

        confirm
        -------
        yes: do not ask.

        EXAMPLE
        =======
        delete db
        delete name=db confirm=yes

        SEE ALSO
        ========
        create /targets/NAME/luns delete
        """
        edit = edits.delete_volume(name)
        self.check(edit)
        self.state.confirm(f"Delete volume {name} and its data on both boxes?", confirm,
                           "volume", name)
        self.state.change(edit, frozenset({name}))
        self.say(f"deleted volume {name}")

    def ui_complete_delete(self, parameters: dict[str, str], text: str,
                           current_param: str) -> list[str]:
        if current_param == "name":
            return matching(volume_names(self.state), text)
        if current_param == "confirm":
            return matching(["yes"], text)
        return []


class VolumeNode(ConsoleNode):
    def __init__(self, name: str, parent: ConsoleNode, state: State) -> None:
        super().__init__(name, parent, state)
        self.define_config_group_param("volume", SIZE, "string",
                                       "Its size (change it with resize).", writable=False)
        self.define_config_group_param("volume", VOLUME_GROUP, "string",
                                       "Its LVM volume group on both boxes.", writable=False)
        self.define_config_group_param("volume", POOL, "string",
                                       "Its thin pool; empty for a thick volume.",
                                       writable=False)

    def ui_getgroup_volume(self, param: str) -> Any:
        data = self.state.data_or_empty()
        volume = find(data, VOLUMES, self.name, "volume")
        if param == VOLUME_GROUP:
            return volume.get(param) or data.get(CLUSTER, {}).get(VOLUME_GROUP,
                                                                  DEFAULT_VOLUME_GROUP)
        return volume.get(param)

    def summary(self) -> Summary:
        size = str(self.ui_getgroup_volume(SIZE))
        pool = self.ui_getgroup_volume(POOL)
        users = edits.exported_by(self.state.data_or_empty(), self.name)
        text = (f"{size}{f' thin in pool {pool}' if pool else ''}, "
                f"{'; '.join(users) if users else 'not exported'}")
        status = self.state.status_or_none()
        if status is None:
            return text, None
        found = next((v for v in status.volumes if v.name == self.name), None)
        if found is None:
            return f"{text}, not in the cluster", False
        roles = [role for _, role in found.roles]
        shown = ", ".join(f"{role} on {node}" for node, role in found.roles) or "stopped"
        healthy = len(roles) == 2 and "Promoted" in roles and replicating(found) is not False
        return f"{text}, {shown}{replication_text(found, '; ')}", healthy

    def ui_command_resize(self, size: str) -> None:
        """
        Grows the volume on both boxes (LVM, then DRBD); initiators see the new
        size after a rescan. Volumes never shrink, and grow only while DRBD is
        connected and up to date on both boxes.

        PARAMETERS
        ==========

        size
        ----
        The new size, larger than the current one: 200G, 1.5T, ...

        EXAMPLE
        =======
        resize 200G

        SEE ALSO
        ========
        get volume size
        """
        self.state.change(edits.resize_volume(self.name, size))
        self.say(f"volume {self.name} is now {size}")

    def ui_complete_resize(self, parameters: dict[str, str], text: str,
                           current_param: str) -> list[str]:
        return sizes(text) if current_param == "size" else []


class NetworksNode(ConsoleNode):
    def __init__(self, parent: ConsoleNode, state: State) -> None:
        super().__init__("network", parent, state)

    def child_names(self) -> list[str]:
        return named(self.state.data_or_empty(), NETWORKS)

    def make_child(self, name: str) -> ConsoleNode:
        return NetworkNode(name, self, self.state)

    def summary(self) -> Summary:
        return count(len(self.children), "network"), None


class NetworkNode(ConsoleNode):
    def __init__(self, name: str, parent: ConsoleNode, state: State) -> None:
        super().__init__(name, parent, state)
        for param in (ROLE, SUBNET):
            self.define_config_group_param("network", param, "string", f"Its {param}.",
                                           writable=False)

    def ui_getgroup_network(self, param: str) -> Any:
        return find(self.state.data_or_empty(), NETWORKS, self.name, "network").get(param)

    def summary(self) -> Summary:
        return f"{self.ui_getgroup_network(ROLE)} {self.ui_getgroup_network(SUBNET)}", None


def timeline_wanted(value: str | None) -> bool:
    """The status command's ``timeline=`` (yes or no; left out: no)."""
    if value is None or value.lower() in ("no", "n", "false"):
        return False
    if value.lower() in ("yes", "y", "true"):
        return True
    raise IscsihaError.single("bad-value", "timeline", value, "yes or no",
                              "leave it out for the status alone")
