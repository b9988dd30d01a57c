"""The base of every console node: its state, output, child syncing and batched `set`."""

from __future__ import annotations

import copy
from collections.abc import Callable, Mapping
from typing import Any

from configshell_fb import ConfigNode

from iscsiha.console.state import Data, State
from iscsiha.errors import IscsihaError, Secret

Summary = tuple[str, bool | None]


def count(n: int, word: str) -> str:
    return f"{n} {word}{'' if n == 1 else 's'}"


WAIT_TIMEOUT = 300.0  # a move's or a standby's wait for the cluster, by default


def parse_timeout(text: str | None) -> float:
    """A `timeout=SECONDS` parameter; WAIT_TIMEOUT when it is not given."""
    try:
        seconds = float(text) if text is not None else WAIT_TIMEOUT
    except ValueError:
        seconds = -1.0
    if not 0 < seconds < float("inf"):
        raise IscsihaError.single("bad-timeout", "timeout", text, "a number of seconds above 0")
    return seconds


def redact(value: object) -> str:
    return f"<set, {len(value)} characters>" if isinstance(value, str) and value else "<not set>"


class ConsoleNode(ConfigNode):  # type: ignore[misc]
    """A node of the console tree; what it shows is read from ``state`` when shown."""

    help_intro = """
                 iscsiha-console
                 ===============
                 The cluster's desired state as a tree: /cluster, /nodes,
                 /volumes, /targets (with their luns, acls, portals and auth)
                 and /network. `ls` shows it with the running cluster's state:
                 green is running as wanted, red needs a look.

                 Every change (create, delete, set, resize, restoreconfig) is
                 validated as a whole, applied to both boxes and only then
                 saved; a change that is refused changes nothing and says
                 which setting, which value and what is allowed. A change
                 that takes away what initiators use (a target, LUN, portal,
                 allowed initiator, their auth or CHAP secret) asks first;
                 confirm=yes on the line answers yes.

                 COMMAND SYNTAX
                 ==============
                 [PATH] COMMAND [PARAMETER ...] [KEYWORD=VALUE ...]

                 e.g. /volumes create name=db size=100G. TAB completes paths,
                 commands and values; `help COMMAND` explains one command.
                 """

    def __init__(self, name: str, parent: ConsoleNode | None, state: State,
                 shell: Any = None) -> None:
        if parent is None:
            super().__init__(name, shell=shell)
        else:
            super().__init__(name, parent)
        self.state = state

    # -- output -------------------------------------------------------------------------

    def say(self, text: str) -> None:
        self.shell.con.display(text)

    # -- children follow the desired state -----------------------------------------------

    def child_names(self) -> list[str] | None:
        """The names the children should have; None for a fixed set of children."""
        return None

    def make_child(self, name: str) -> ConsoleNode:
        raise NotImplementedError(name)

    def sync(self) -> None:
        """Add and remove children to match the desired state, keeping the ones that stay
        (the shell's current node may be one of them)."""
        wanted = self.child_names()
        if wanted is not None:
            # A hand-edited file may name something twice; validation reports it,
            # the tree shows it once.
            wanted = list(dict.fromkeys(wanted))
            for child in [c for c in self.children if c.name not in wanted]:
                self.remove_child(child)
            have = {c.name for c in self.children}
            for name in wanted:
                if name not in have:
                    self.make_child(name)
        for child in self.children:
            child.sync()

    def attached(self) -> bool:
        parent = self.parent
        return parent is None or (self in parent.children and parent.attached())

    # -- checks before asking ------------------------------------------------------------

    def check(self, edit: Callable[[Data], None]) -> None:
        """Run ``edit`` on a copy, so a doomed change is refused before any question."""
        edit(copy.deepcopy(self.state.data()))

    # -- batched parameter groups --------------------------------------------------------

    def batched_groups(self) -> Mapping[str, Callable[[dict[str, Any]], None]]:
        """Groups whose parameters are set together in one change: name -> setter."""
        return {}

    def ui_command_set(self, group: str | None = None, **parameter: str) -> None:
        """
        Sets one or more parameters of a group. All parameters given in one `set`
        are one change: the whole desired state is validated, applied to the
        cluster and saved, or nothing changes. Secrets are never shown back.

        Run with no parameter nor group to list the groups here, or with just a
        group name to list its parameters. The "global" group holds the
        console's own preferences.

        A secret (secret, mutual_secret) is never typed into the line: give
        it as `-` and it is asked at the terminal without echo, or read as
        one line of stdin by a script; with both, secret's line comes first,
        then mutual_secret's. A value typed into the line is refused and
        nothing changes.

        PARAMETERS
        ==========

        group
        -----
        The parameter group: see `get` for the groups of this node.

        EXAMPLE
        =======
        /targets/vm/auth set auth mode=chap user=hv1 secret=-
        (from a script: printf '%s\\n' "$SECRET" "$MUTUAL" | iscsiha-console
        /targets/vm/auth set auth mode=mutual-chap user=hv1 secret=-
        mutual_user=san mutual_secret=-)
        /targets/vm set target failback=auto

        SEE ALSO
        ========
        get
        """
        setters = self.batched_groups()
        if group is None or not parameter or group not in setters:
            super().ui_command_set(group, **parameter)
            return
        writable = self.list_group_params(group, writable=True)
        values: dict[str, Any] = {}
        for name, raw in parameter.items():
            if name not in writable:
                raise IscsihaError.single("unknown-key", f"{self.path} {group}", name,
                                          ", ".join(writable))
            kind = self.get_group_param(group, name)["type"]
            try:
                values[name] = self.get_type_method(kind)(raw)
            except ValueError as exc:
                shown = Secret(raw) if kind == "secret" else raw
                raise IscsihaError.single("bad-value", f"{self.path} {name}", shown,
                                          str(self.get_type_method(kind)()),
                                          str(exc)) from exc
        setters[group](values)
        getter = self.get_group_getter(group)
        for name in values:
            kind = self.get_group_param(group, name)["type"]
            self.say(f"{name}={self.get_type_method(kind)(getter(name), reverse=True)}")

    # -- parameter types ------------------------------------------------------------------

    def ui_type_secret(self, value: str | None = None, enum: bool = False,
                       reverse: bool = False) -> Any:
        if reverse:
            return redact(value)
        if value is None:
            return [] if enum else "- (asked without echo, or a line of stdin)"
        return value


def choice(value: str | None, enum: bool, reverse: bool, choices: list[str],
           syntax: str) -> Any:
    """The body of a ui_type_ method for a value out of ``choices`` (checked by validation)."""
    if reverse:
        return "n/a" if value is None else str(value)
    if value is None:
        return choices if enum else syntax
    return value
