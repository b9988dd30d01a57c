"""/box: this box's own networks (iscsiha.commands.network), before and after a cluster."""

from __future__ import annotations

import time

from iscsiha.commands import network
from iscsiha.console.base import ConsoleNode, Summary
from iscsiha.console.state import State
from iscsiha.errors import IscsihaError

SAVED = "saved; `apply` applies it"


class BoxNode(ConsoleNode):
    def __init__(self, parent: ConsoleNode, state: State) -> None:
        super().__init__("box", parent, state)
        BoxNetworksNode(self, state)

    def summary(self) -> Summary:
        return f"this box ({self.state.backend.hostname()})", None


class BoxNetworksNode(ConsoleNode):
    def __init__(self, parent: ConsoleNode, state: State) -> None:
        super().__init__("networks", parent, state)

    def env(self) -> network.NetworkEnv:
        return self.state.backend.network_env()

    def summary(self) -> Summary:
        try:
            env = self.env()
            line = network.state_line(env, network.load(env))
        except IscsihaError as exc:
            return f"unreadable: {exc.reports[0].field}: {exc.reports[0].message}", False
        return line, line == "applied"

    def ui_command_show(self) -> None:
        """
        Shows this box's networks (address, link, MTU, gateway), its bonds and
        DNS servers, and whether they are applied.

        EXAMPLE
        =======
        show

        SEE ALSO
        ========
        add apply
        """
        for line in network.show(self.env()):
            self.say(line)

    def ui_command_nics(self) -> None:
        """
        Lists this box's links: name, MAC address, state (up or down) and
        addresses, to tell which NIC is cabled to which network.

        EXAMPLE
        =======
        nics

        SEE ALSO
        ========
        add show
        """
        for line in network.nics(self.env()):
            self.say(line)

    def ui_command_add(self, name: str, link: str, address: str, mtu: str | None = None,
                       gateway: str | None = None) -> None:
        """
        Adds a network to this box, or replaces it: the link that carries it
        and this box's address. Saved, not applied: `apply` applies it.

        PARAMETERS
        ==========

        name
        ----
        The network's name, as the cluster knows it (link0, link1, repl,
        storage) or another one (mgmt).

        link
        ----
        The NIC, bond or NIC.VLAN that carries it: eno1, bond0, bond0.30.

        address
        -------
        This box's address with the prefix length: 10.10.0.11/24.

        mtu
        ---
        1280 to 9216 (default 1500); the same on both boxes.

        gateway
        -------
        The default route through this network (one network at most).

        EXAMPLE
        =======
        add name=repl link=eno3 address=10.20.0.11/24 mtu=9000

        SEE ALSO
        ========
        remove bond apply
        """
        network.set_network(self.env(), name, link, address,
                                                 _integer("mtu", mtu), gateway)
        self.say(SAVED)

    def ui_command_remove(self, name: str) -> None:
        """
        Removes a network of this box; once applied its NIC asks DHCP again.

        PARAMETERS
        ==========

        name
        ----
        The network to remove.

        EXAMPLE
        =======
        remove name=mgmt

        SEE ALSO
        ========
        add apply
        """
        network.delete_network(self.env(), name)
        self.say(SAVED)

    def ui_command_bond(self, name: str, members: str, mode: str | None = None) -> None:
        """
        Adds or replaces a bond: NICs that act as one. Point a network's link at
        it first (`add ... link=bond0`).

        PARAMETERS
        ==========

        name
        ----
        The bond's name: bond0.

        members
        -------
        Its NICs, separated by commas: ens1f0,ens1f1.

        mode
        ----
        active-backup (default; any switch) or 802.3ad (LACP; the switch ports
        in one LACP group).

        EXAMPLE
        =======
        bond name=bond0 members=ens1f0,ens1f1 mode=802.3ad

        SEE ALSO
        ========
        unbond add
        """
        found = [m for m in members.split(",") if m]
        network.set_bond(self.env(), name, found, mode)
        self.say(SAVED)

    def ui_command_unbond(self, name: str) -> None:
        """
        Removes a bond (no network may use it any more).

        PARAMETERS
        ==========

        name
        ----
        The bond to remove.

        EXAMPLE
        =======
        unbond name=bond0

        SEE ALSO
        ========
        bond
        """
        network.delete_bond(self.env(), name)
        self.say(SAVED)

    def ui_command_dns(self, servers: str = "") -> None:
        """
        Sets this box's DNS servers (at most 3).

        PARAMETERS
        ==========

        servers
        -------
        Their addresses, separated by commas; left out: none.

        EXAMPLE
        =======
        dns servers=192.168.1.1,192.168.1.2

        SEE ALSO
        ========
        add
        """
        network.set_dns(self.env(), [s for s in servers.split(",") if s])
        self.say(SAVED)

    def ui_command_apply(self, within: str | None = None) -> None:
        """
        Applies this box's networks as a trial: check that you can still reach
        the box (open a new session), then `confirm`. Without a confirmation the
        networks from before come back at the deadline, even across a reboot.

        PARAMETERS
        ==========

        within
        ------
        Seconds to confirm in, 10 to 3600 (default 120).

        EXAMPLE
        =======
        apply within=300

        SEE ALSO
        ========
        confirm revert
        """
        seconds = network.WITHIN_DEFAULT if within is None else _integer("within", within)
        env = self.env()
        trial = network.apply(env, seconds or network.WITHIN_DEFAULT)
        if trial is None:
            self.say("already applied: nothing to do")
            return
        for text in network.missing_addresses(env, network.load(env)):
            self.say(f"warning: {text} is not there yet (no such link, or networkd "
                     "refused it)")
        at = time.strftime("%H:%M:%S", time.localtime(trial.deadline))
        self.say(f"applied as trial {trial.id}: `confirm` from a new session before {at}, "
                 "or the networks from before come back")

    def ui_command_confirm(self) -> None:
        """
        Keeps the change being tried.

        EXAMPLE
        =======
        confirm

        SEE ALSO
        ========
        apply revert
        """
        self.say(f"confirmed: trial {network.confirm(self.env()).id} is kept")

    def ui_command_revert(self) -> None:
        """
        Puts back the networks from before the change being tried, now.

        EXAMPLE
        =======
        revert

        SEE ALSO
        ========
        apply confirm
        """
        trial = network.revert(self.env())
        self.say("nothing to put back" if trial is None
                 else f"put back the networks from before trial {trial.id}")


def _integer(name: str, text: str | None) -> int | None:
    if text is None:
        return None
    if not text.isdigit() or len(text) > 6:
        raise IscsihaError.single("bad-value", name, text, "a whole number")
    return int(text)
