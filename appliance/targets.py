"""The console tree under /targets: targets, their LUNs, ACLs, portals and CHAP."""

from __future__ import annotations

from typing import Any

from iscsiha.console import edits
from iscsiha.console.base import ConsoleNode, Summary, choice, count, parse_timeout, redact
from iscsiha.console.completion import (
    initiators,
    matching,
    node_names,
    storage_addresses,
    target_names,
    unexported_volumes,
)
from iscsiha.console.edits import find, named, portal_key, tables
from iscsiha.console.state import State
from iscsiha.errors import IscsihaError
from iscsiha.model.fields import (
    ALLOW_ANY_INITIATOR,
    FAILBACK,
    INITIATORS,
    IQN,
    LUN,
    LUNS,
    MODE,
    MUTUAL_SECRET,
    MUTUAL_USER,
    NAME,
    PORTALS,
    PREFERRED_NODE,
    SECRET,
    SIZE,
    TARGETS,
    USER,
    VOLUME,
    VOLUMES,
)
from iscsiha.model.types import AuthMode, Failback
from iscsiha.views import sessions_text

_AUTH_MODES = [m.value for m in AuthMode]
_FAILBACK = [Failback.MANUAL.value, Failback.AUTO.value]  # the default first


def _yes(value: str | None, field: str) -> bool:
    if value is None or value.lower() in ("no", "false"):
        return False
    if value.lower() in ("yes", "true"):
        return True
    raise IscsihaError.single("bad-value", field, value, "yes or no")


class TargetsNode(ConsoleNode):
    def __init__(self, parent: ConsoleNode, state: State) -> None:
        super().__init__("targets", parent, state)

    def child_names(self) -> list[str]:
        return named(self.state.data_or_empty(), TARGETS)

    def make_child(self, name: str) -> ConsoleNode:
        return TargetNode(name, self, self.state)

    def summary(self) -> Summary:
        return count(len(self.children), "target"), None

    def ui_command_create(self, name: str, portal: str, preferred_node: str, volume: str,
                          initiator: str | None = None, iqn: str | None = None,
                          failback: str | None = None,
                          allow_any_initiator: str | None = None) -> None:
        """
        Creates an iSCSI target with its floating portal, exporting one volume
        as LUN 0 to one initiator (add more under its luns, acls and portals).
        It is applied to the cluster at once and starts on its preferred node.

        PARAMETERS
        ==========

        name
        ----
        1 to 32 lowercase letters, digits and '-', starting with a letter.

        portal
        ------
        A free address in a storage network (ADDRESS or ADDRESS:PORT); it
        floats to whichever box runs the target.

        preferred_node
        --------------
        The node it runs on when both are up.

        volume
        ------
        The volume exported as LUN 0.

        initiator
        ---------
        The IQN of the first initiator allowed to log in (access is denied by
        default).

        iqn
        ---
        The target's IQN; default: like the existing targets' (needed for the
        first target).

        failback
        --------
        manual (default): stay where it runs after a failover; auto: return to
        the preferred node when it is back.

        allow_any_initiator
        -------------------
        yes: any initiator may log in (CHAP still applies).

        EXAMPLE
        =======
        create name=vm portal=10.30.0.100 preferred_node=san-a volume=db initiator=iqn.1993-08.org.debian:01:abc

        SEE ALSO
        ========
        delete /targets/NAME/luns /targets/NAME/acls /targets/NAME/auth
        """  # noqa: E501
        any_initiator = _yes(allow_any_initiator, "allow_any_initiator")
        self.state.change(edits.create_target(name, portal, preferred_node, volume, initiator,
                                              iqn, failback, any_initiator))
        self.say(f"created target {name}")

    def ui_complete_create(self, parameters: dict[str, str], text: str,
                           current_param: str) -> list[str]:
        options: dict[str, list[str]] = {
            "portal": storage_addresses(self.state.data_or_empty(), text),
            "preferred_node": node_names(self.state),
            "volume": unexported_volumes(self.state),
            "initiator": initiators(self.state),
            "failback": _FAILBACK,
            "allow_any_initiator": ["yes", "no"],
        }
        if current_param == "iqn":
            found = edits.default_iqn(self.state.data_or_empty(), parameters.get("name", ""))
            return matching([found] if found else [], text)
        return matching(options.get(current_param, []), text)

    def ui_command_delete(self, name: str, confirm: str | None = None) -> None:
        """
        Deletes a target: initiators lose their sessions and its portal address
        goes. Its volumes and their data stay. Asks first.

        PARAMETERS
        ==========

        name
        ----
        The target.

        confirm
        -------
        yes: do not ask.

        EXAMPLE
        =======
        delete vm

        SEE ALSO
        ========
        create /volumes delete
        """
        edit = edits.delete_target(name)
        self.check(edit)
        self.state.confirm(f"Delete target {name}? Its initiators lose access.", confirm,
                           "target", name)
        self.state.change(edit)
        self.say(f"deleted target {name}")

    def ui_complete_delete(self, parameters: dict[str, str], text: str,
                           current_param: str) -> list[str]:
        if current_param == "name":
            return matching(target_names(self.state), text)
        return matching(["yes"], text) if current_param == "confirm" else []


class TargetNode(ConsoleNode):
    def __init__(self, name: str, parent: ConsoleNode, state: State) -> None:
        super().__init__(name, parent, state)
        LunsNode(self, state)
        AclsNode(self, state)
        PortalsNode(self, state)
        AuthNode("auth", self, state, target=name)
        for param, kind, description in (
                (IQN, "string", "Its iSCSI name."),
                (PREFERRED_NODE, "nodename", "The node it runs on when both are up."),
                (FAILBACK, "failback", "manual: stay after a failover; auto: go back."),
                (ALLOW_ANY_INITIATOR, "bool", "Any initiator may log in.")):
            self.define_config_group_param("target", param, kind, description)

    def table(self) -> dict[str, Any]:
        return find(self.state.data_or_empty(), TARGETS, self.name, "target")

    def ui_getgroup_target(self, param: str) -> Any:
        value = self.table().get(param)
        defaults = {FAILBACK: Failback.MANUAL.value, ALLOW_ANY_INITIATOR: False}
        return defaults.get(param) if value is None else value

    def ui_setgroup_target(self, param: str, value: Any) -> None:
        self.set_target({param: value})

    def set_target(self, values: dict[str, Any]) -> None:
        self.state.change(edits.set_target(self.name, values))

    def batched_groups(self) -> dict[str, Any]:
        return {"target": self.set_target}

    def ui_type_nodename(self, value: str | None = None, enum: bool = False,
                         reverse: bool = False) -> Any:
        return choice(value, enum, reverse, node_names(self.state), "NODE")

    def ui_type_failback(self, value: str | None = None, enum: bool = False,
                         reverse: bool = False) -> Any:
        return choice(value, enum, reverse, _FAILBACK, "|".join(_FAILBACK))

    def summary(self) -> Summary:
        table = self.table()
        preferred = table.get(PREFERRED_NODE)
        text = f"{count(len(table.get(LUNS) or []), 'LUN')}, preferred {preferred}"
        status = self.state.status_or_none()
        if status is None:
            return text, None
        found = next((t for t in status.targets if t.name == self.name), None)
        if found is None:
            return f"{text}, not in the cluster", False
        if not found.running_on:
            return f"{text}, stopped", False
        where = f"on {', '.join(found.running_on)}{sessions_text(found, ', ')}"
        if not found.healthy:
            return f"{text}, {where}, not fully started", False
        return f"{text}, {where}", True

    def ui_command_move(self, node: str, timeout: str | None = None) -> None:
        """
        Moves the target (its portal addresses and all its LUNs) to the other
        box and waits until it runs there. Initiators reconnect to the same
        address. A target with failback=auto would go straight back: change
        its preferred_node instead.

        PARAMETERS
        ==========

        node
        ----
        The node to move it to.

        timeout
        -------
        Seconds to wait for it to run there (default 300).

        EXAMPLE
        =======
        move node=san-b

        SEE ALSO
        ========
        /status set target preferred_node=NODE
        """
        seconds = parse_timeout(timeout)
        took = self.state.backend.move(self.name, node, seconds, self.state.progress)
        self.say(f"target {self.name} runs on {node} ({took:.1f} s)")

    def ui_complete_move(self, parameters: dict[str, str], text: str,
                         current_param: str) -> list[str]:
        return matching(node_names(self.state), text) if current_param == "node" else []


class _TargetPart(ConsoleNode):
    """A child of a target (luns, acls, portals): edits go to that target."""

    @property
    def target(self) -> str:
        return str(self.parent.name)

    def target_table(self) -> dict[str, Any]:
        return find(self.state.data_or_empty(), TARGETS, self.target, "target")


class LunsNode(_TargetPart):
    def __init__(self, parent: ConsoleNode, state: State) -> None:
        super().__init__("luns", parent, state)

    def child_names(self) -> list[str]:
        return [f"lun{x[LUN]}" for x in self.target_table().get(LUNS) or []
                if isinstance(x, dict) and isinstance(x.get(LUN), int)]

    def make_child(self, name: str) -> ConsoleNode:
        return LunNode(name, self, self.state)

    def summary(self) -> Summary:
        return count(len(self.children), "LUN"), None

    def ui_command_create(self, volume: str, lun: str | None = None) -> None:
        """
        Exports a volume as a LUN of this target. A volume is exported by one
        LUN of one target only.

        PARAMETERS
        ==========

        volume
        ------
        The volume to export.

        lun
        ---
        The LUN number, 0 to 255; default the lowest free one.

        EXAMPLE
        =======
        create volume=db
        create volume=db lun=3

        SEE ALSO
        ========
        delete /volumes create
        """
        number = None if lun is None else edits.parse_lun(lun, "lun")
        self.state.change(edits.create_lun(self.target, volume, number))
        self.say(f"target {self.target} exports volume {volume}")

    def ui_complete_create(self, parameters: dict[str, str], text: str,
                           current_param: str) -> list[str]:
        if current_param == "volume":
            return matching(unexported_volumes(self.state), text)
        return []

    def ui_command_delete(self, lun: str, confirm: str | None = None) -> None:
        """
        Stops exporting a LUN; its volume and data stay. Initiators lose the
        disk at once, so this asks first.

        PARAMETERS
        ==========

        lun
        ---
        The LUN: its number or its name (lun1).

        confirm
        -------
        yes: do not ask.

        EXAMPLE
        =======
        delete lun1

        SEE ALSO
        ========
        create
        """
        number = edits.parse_lun(lun, "lun")
        edit = edits.delete_lun(self.target, number)
        self.check(edit)
        self.state.confirm(f"Delete LUN {number} of target {self.target}? Initiators lose "
                           "that disk.", confirm, f"target {self.target} LUN", number)
        self.state.change(edit)
        self.say(f"deleted LUN {number} of target {self.target}")

    def ui_complete_delete(self, parameters: dict[str, str], text: str,
                           current_param: str) -> list[str]:
        if current_param == "lun":
            return matching((c.name for c in self.children), text)
        return matching(["yes"], text) if current_param == "confirm" else []


class LunNode(ConsoleNode):
    def summary(self) -> Summary:
        target = find(self.state.data_or_empty(), TARGETS, self.parent.parent.name, "target")
        number = int(self.name.removeprefix("lun"))
        lun = next((x for x in target.get(LUNS) or [] if isinstance(x, dict)
                    and x.get(LUN) == number), {})
        volume = str(lun.get(VOLUME))
        found = [v for v in tables(self.state.data_or_empty(), VOLUMES)
                 if v.get(NAME) == volume]
        return f"volume {volume} ({found[0].get(SIZE) if found else '?'})", None


class AclsNode(_TargetPart):
    def __init__(self, parent: ConsoleNode, state: State) -> None:
        super().__init__("acls", parent, state)

    def child_names(self) -> list[str]:
        return [str(i) for i in self.target_table().get(INITIATORS) or []]

    def make_child(self, name: str) -> ConsoleNode:
        return AclNode(name, self, self.state)

    def summary(self) -> Summary:
        if self.target_table().get(ALLOW_ANY_INITIATOR):
            return "any initiator may log in", None
        return f"{count(len(self.children), 'initiator')} may log in", None

    def ui_command_create(self, wwn: str) -> None:
        """
        Allows an initiator to log in to this target (access is denied to any
        initiator not listed, unless allow_any_initiator is set).

        PARAMETERS
        ==========

        wwn
        ---
        The initiator's iSCSI name (iqn., eui. or naa.), lowercase.

        EXAMPLE
        =======
        create iqn.1993-08.org.debian:01:abc

        SEE ALSO
        ========
        delete /targets/NAME/auth
        """
        self.state.change(edits.create_acl(self.target, wwn))
        self.say(f"initiator {wwn} may log in to target {self.target}")

    def ui_complete_create(self, parameters: dict[str, str], text: str,
                           current_param: str) -> list[str]:
        if current_param != "wwn":
            return []
        allowed = set(self.target_table().get(INITIATORS) or [])
        return matching((i for i in initiators(self.state) if i not in allowed), text)

    def ui_command_delete(self, wwn: str) -> None:
        """
        Takes an initiator's access away; its open sessions end.

        PARAMETERS
        ==========

        wwn
        ---
        The initiator's iSCSI name.

        EXAMPLE
        =======
        delete iqn.1993-08.org.debian:01:abc

        SEE ALSO
        ========
        create
        """
        self.state.change(edits.delete_acl(self.target, wwn))
        self.say(f"initiator {wwn} may no longer log in to target {self.target}")

    def ui_complete_delete(self, parameters: dict[str, str], text: str,
                           current_param: str) -> list[str]:
        return matching((c.name for c in self.children), text) if current_param == "wwn" else []


class AclNode(ConsoleNode):
    def summary(self) -> Summary:
        return "may log in", True


class PortalsNode(_TargetPart):
    def __init__(self, parent: ConsoleNode, state: State) -> None:
        super().__init__("portals", parent, state)

    def child_names(self) -> list[str]:
        return [portal_key(str(p)) for p in self.target_table().get(PORTALS) or []]

    def make_child(self, name: str) -> ConsoleNode:
        return PortalNode(name, self, self.state)

    def summary(self) -> Summary:
        return count(len(self.children), "floating portal"), None

    def ui_command_create(self, address: str) -> None:
        """
        Adds a floating portal: an address in a storage network (one per
        storage network for multipath) that moves with the target.

        PARAMETERS
        ==========

        address
        -------
        ADDRESS or ADDRESS:PORT ([IPv6]:PORT); the port defaults to 3260.

        EXAMPLE
        =======
        create 10.30.0.102

        SEE ALSO
        ========
        delete
        """
        self.state.change(edits.create_portal(self.target, address))
        self.say(f"target {self.target} has portal {portal_key(address)}")

    def ui_complete_create(self, parameters: dict[str, str], text: str,
                           current_param: str) -> list[str]:
        if current_param == "address":
            return storage_addresses(self.state.data_or_empty(), text)
        return []

    def ui_command_delete(self, address: str) -> None:
        """
        Removes a floating portal; a target keeps at least one.

        PARAMETERS
        ==========

        address
        -------
        The portal, with or without its port.

        EXAMPLE
        =======
        delete 10.30.0.102:3260

        SEE ALSO
        ========
        create
        """
        self.state.change(edits.delete_portal(self.target, address))
        self.say(f"target {self.target} no longer has portal {portal_key(address)}")

    def ui_complete_delete(self, parameters: dict[str, str], text: str,
                           current_param: str) -> list[str]:
        if current_param == "address":
            return matching((c.name for c in self.children), text)
        return []


class PortalNode(ConsoleNode):
    def summary(self) -> Summary:
        return "floating address", None


class AuthNode(ConsoleNode):
    """CHAP of a target, or of discovery (``target`` None)."""

    def __init__(self, name: str, parent: ConsoleNode, state: State,
                 target: str | None) -> None:
        super().__init__(name, parent, state)
        self.target = target
        for param, kind, description in (
                (MODE, "authmode", "none, chap or mutual-chap."),
                (USER, "string", "The user name the initiator presents."),
                (SECRET, "secret", "The secret the initiator presents (12 to 16)."),
                (MUTUAL_USER, "string", "The user name the target presents back."),
                (MUTUAL_SECRET, "secret", "The secret the target presents back.")):
            self.define_config_group_param("auth", param, kind, description)

    def table(self) -> dict[str, Any]:
        return edits.auth_table(self.state.data_or_empty(), self.target)

    def ui_getgroup_auth(self, param: str) -> Any:
        return self.table().get(param)

    def ui_setgroup_auth(self, param: str, value: Any) -> None:
        self.set_auth({param: value})

    def batched_groups(self) -> dict[str, Any]:
        return {"auth": self.set_auth}

    def set_auth(self, values: dict[str, Any]) -> None:
        # The order `-` secrets are read from stdin in, as `help set` says.
        for key in [k for k in (SECRET, MUTUAL_SECRET) if k in values]:
            if not values[key]:
                values[key] = self.state.ask_secret(f"{key}: ")
        self.state.change(edits.set_auth(self.target, values))

    def ui_type_authmode(self, value: str | None = None, enum: bool = False,
                         reverse: bool = False) -> Any:
        return choice(value, enum, reverse, _AUTH_MODES, "|".join(_AUTH_MODES))

    def summary(self) -> Summary:
        table = self.table()
        mode = str(table.get(MODE, AuthMode.NONE.value))
        if mode == AuthMode.NONE.value:
            return "none: no CHAP", None
        users = ", ".join(f"{k} {table.get(k)}" for k in (USER, MUTUAL_USER)
                          if table.get(k))
        secrets = ", ".join(f"{k} {redact(table.get(k))}" for k in sorted(edits.SECRET_KEYS)
                            if k in table)
        return f"{mode}: {users}; {secrets}", True
