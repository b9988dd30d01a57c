"""The console's /cluster: what the desired state says of the cluster, and forming it
(`init` on the first box, `join` on the second)."""

from __future__ import annotations

import ipaddress
from contextlib import suppress
from typing import Any

from iscsiha.commands.bootstrap_params import NETWORKS, InitRequest
from iscsiha.commands.bootstrap_steps import this_and_other
from iscsiha.commands.tiebreaker import TiebreakerAccess
from iscsiha.commands.upgrade_pair import summary
from iscsiha.console.base import ConsoleNode, Summary
from iscsiha.console.completion import matching
from iscsiha.console.state import State
from iscsiha.console.targets import AuthNode
from iscsiha.errors import IscsihaError, Secret
from iscsiha.model.fields import CLUSTER, NAME, TIEBREAKER, VOLUME_GROUP
from iscsiha.views import init_lines, replace_lines

_NETWORK_NAMES = [name for name, _ in NETWORKS]


class ClusterNode(ConsoleNode):
    def __init__(self, parent: ConsoleNode, state: State) -> None:
        super().__init__("cluster", parent, state)
        AuthNode("discovery_auth", self, state, target=None)
        for param, description in ((NAME, "The cluster's name."),
                                   (TIEBREAKER, "The corosync-qnetd server."),
                                   (VOLUME_GROUP, "The default volume group.")):
            self.define_config_group_param("cluster", param, "string", description,
                                           writable=False)

    def ui_getgroup_cluster(self, param: str) -> Any:
        return self.state.data_or_empty().get(CLUSTER, {}).get(param)

    def summary(self) -> Summary:
        cluster = self.state.data_or_empty().get(CLUSTER)
        if cluster is None:
            return "not set up yet: `init` on the first box, `join` on the second", None
        text = f"{cluster.get(NAME, '?')}, tiebreaker {cluster.get(TIEBREAKER) or 'none'}"
        status = self.state.status_or_none()
        if status is None:
            return f"{text}, cluster status unknown", None
        online = sum(up for _, up in status.nodes)
        parts = [text, f"{online}/{len(status.nodes)} nodes online",
                 {True: "quorate", False: "NO QUORUM", None: "no DC yet"}[status.quorate]]
        fencing = status.fencing
        if fencing is not None:
            parts.append(f"fencing {'ready' if fencing.ready else 'NOT READY'}")
        healthy = (online == len(status.nodes) and status.quorate is True
                   and fencing is not None and fencing.ready)
        return ", ".join(parts), healthy

    def ui_command_init(self, name: str, peer: str, link0: str, link1: str, repl: str,
                        storage: str, bmc: str, bmc_user: str, peer_bmc: str,
                        node: str | None = None, storage2: str | None = None,
                        ping: str | None = None, peer_bmc_user: str | None = None,
                        bmc_password: str | None = None, peer_bmc_password: str | None = None,
                        tiebreaker: str | None = None, tiebreaker_user: str | None = None,
                        tiebreaker_signer: str | None = None,
                        bmc_cipher: str | None = None) -> None:
        """
        Sets this box up as the first of the cluster's two boxes: checks every
        setting and that this box has its addresses, then writes corosync.conf,
        the authkey, the cluster SSH key and the desired state, gets a
        certificate from the tiebreaker, starts corosync, corosync-qdevice and
        pacemaker, and sets the cluster properties. A failure undoes it all.
        It prints a one-time token: run `/cluster join` on the other box
        within an hour and give it the token when asked.

        The two BMC passwords are never typed into the line (it is logged
        and kept in the history): leave them out, or give them as `-`, and
        they are asked at the terminal without echo. A script gives them on
        stdin, one line each, in this order: bmc_password, then
        peer_bmc_password (`printf '%s\\n' "$A" "$B" | iscsiha-console
        /cluster init ... bmc_password=- peer_bmc_password=-`). A value
        typed into the line is refused and nothing is done.

        Each network is SUBNET,THIS_BOX,PEER: the subnet in CIDR form, this
        box's address in it, the peer's address in it. TAB offers this box's
        own addresses.

        PARAMETERS
        ==========

        name
        ----
        The cluster's name: lowercase letters, digits and '-'.

        peer
        ----
        The other box's name, which must be its host name.

        link0
        -----
        The first corosync link (the join token is served there).

        link1
        -----
        The second corosync link.

        repl
        ----
        The replication link (DRBD).

        storage
        -------
        The storage network, where the targets' floating portals live.

        bmc
        ---
        This box's BMC address (IPMI), for fencing.

        bmc_user
        --------
        The IPMI user on this box's BMC.

        peer_bmc
        --------
        The peer's BMC address.

        node
        ----
        This box's name; default its host name.

        storage2
        --------
        A second storage network (multipath).

        ping
        ----
        Hosts on the storage networks that answer ping while a box's link
        works (a switch, a router), separated by commas.

        peer_bmc_user
        -------------
        The IPMI user on the peer's BMC; default bmc_user.

        bmc_cipher
        ----------
        Both BMCs' IPMI cipher suite (ipmitool -C, 0-17). Without it
        ipmitool asks each BMC first, which some answer only after seconds
        of retries on every fence call.

        bmc_password
        ------------
        Only `-` (or left out): asked without echo, or the first line of
        stdin.

        peer_bmc_password
        -----------------
        Only `-` (or left out): asked without echo, or the next line of
        stdin.

        tiebreaker
        ----------
        The corosync-qnetd host; without one, fencing alone decides.

        tiebreaker_user
        ---------------
        Who signs the cluster's certificate there over SSH: root (default)
        or another user who may use the qnetd CA there. SSH asks for its
        password if it needs one.

        tiebreaker_signer
        -----------------
        Instead of SSH: the path of a program run as `PROGRAM ca` and
        `PROGRAM sign CLUSTER` that reaches the qnetd CA its own way (see
        docs/bootstrap.md).

        EXAMPLE
        =======
        init name=san peer=san-b link0=10.10.0.0/24,10.10.0.11,10.10.0.12 link1=10.11.0.0/24,10.11.0.11,10.11.0.12 repl=10.20.0.0/24,10.20.0.11,10.20.0.12 storage=10.30.0.0/24,10.30.0.11,10.30.0.12 ping=10.30.0.1 bmc=10.0.0.21 peer_bmc=10.0.0.22 bmc_user=fence tiebreaker=10.0.0.5 bmc_password=- peer_bmc_password=-

        SEE ALSO
        ========
        join status
        """  # noqa: E501
        given = {"link0": link0, "link1": link1, "repl": repl, "storage": storage,
                 "storage2": storage2}
        who = node or self.state.backend.hostname()
        request = InitRequest(
            name=name, node=node, peer=peer,
            networks={k: v for k, v in given.items() if v is not None},
            bmc=bmc, bmc_user=bmc_user,
            bmc_password=Secret(bmc_password or self.state.ask_secret(
                f"BMC password of {who} (not echoed): ")),
            peer_bmc=peer_bmc, peer_bmc_user=peer_bmc_user or bmc_user,
            peer_bmc_password=Secret(peer_bmc_password or self.state.ask_secret(
                f"BMC password of {peer} (not echoed): ")),
            ping=tuple(p.strip() for p in (ping or "").split(",") if p.strip()),
            tiebreaker=tiebreaker, bmc_cipher=bmc_cipher)
        access = TiebreakerAccess(tiebreaker_user or "root", tiebreaker_signer)
        result = self.state.backend.init_cluster(request, access, self.state.progress)
        for line in init_lines(result):
            self.say(line)

    def ui_complete_init(self, parameters: dict[str, str], text: str,
                         current_param: str) -> list[str]:
        if current_param == "node":
            return matching([self.state.backend.hostname()], text)
        if current_param in _NETWORK_NAMES:
            return self._own_networks(parameters, text)
        if current_param == "peer_bmc_user":
            return matching([parameters["bmc_user"]] if parameters.get("bmc_user") else [],
                            text)
        if current_param == "tiebreaker_user":
            return matching(["root"], text)
        return []

    def _own_networks(self, parameters: dict[str, str], text: str) -> list[str]:
        """SUBNET,ADDRESS, for each address of this box not given yet: the peer's is next."""
        used = {part for key in _NETWORK_NAMES for part in parameters.get(key, "").split(",")}
        found = []
        with suppress(IscsihaError, OSError):  # completion must not fail on a netlink error
            for _ifname, address, prefix in self.state.backend.local_addresses():
                if address.is_loopback or address.is_link_local or str(address) in used:
                    continue
                subnet = ipaddress.ip_interface(f"{address}/{prefix}").network
                found.append(f"{subnet},{address},")
        # No space after a lone candidate: the peer's address comes next.
        return sorted(c for c in found if c.startswith(text))

    def ui_command_join(self, token: str | None = None) -> None:
        """
        Makes this box the second of the cluster that `/cluster init` set up
        on the first box: it fetches the cluster's keys and settings from
        there over TLS, keyed by the token, checks that this box is the peer
        init was given (its host name, and its address on every network),
        writes the files, starts the cluster services and applies the desired
        state. A wrong token, an unreachable first box or a wrong network
        changes nothing on either box, and the token stays valid.

        The token is a secret and never typed into the line (it is logged
        and kept in the history): it is asked at the terminal without echo,
        or read as one line of stdin by a script
        (`echo "$TOKEN" | iscsiha-console /cluster join token=-`).

        PARAMETERS
        ==========

        token
        -----
        Only `-` (or left out): the token `/cluster init` printed
        (ISJ1-...), asked without echo or read from stdin; case and dashes
        do not matter.

        EXAMPLE
        =======
        join

        SEE ALSO
        ========
        init status
        """
        token = token or self.state.ask_secret("join token (not echoed): ")
        config = self.state.backend.join_cluster(Secret(token), self.state.progress)
        me, first = this_and_other(config, self.state.backend.hostname())
        self.say(f"{me.name} joined cluster {config.cluster.name} with {first.name}")

    def ui_complete_join(self, parameters: dict[str, str], text: str,
                         current_param: str) -> list[str]:
        if current_param == "token":
            return matching(["-"], text)
        return []

    def ui_command_replace(self, node: str) -> None:
        """
        On the box that stays, when the other box is dead for good: puts
        it in standby and prints a one-time token for the new box that
        takes its place (the same name and addresses, empty disks). On the
        new box, `/cluster join` with that token joins the cluster, makes
        every volume anew and DRBD copies them in full from this box
        (docs/replace.md). Refused while that box is online.

        PARAMETERS
        ==========

        node
        ----
        The dead box's name (the other box of this cluster).

        EXAMPLE
        =======
        replace node=san-b

        SEE ALSO
        ========
        join status
        """
        result = self.state.backend.replace_box(node, self.state.progress)
        for line in replace_lines(result):
            self.say(line)

    def ui_complete_replace(self, parameters: dict[str, str], text: str,
                            current_param: str) -> list[str]:
        if current_param == "node":
            status = self.state.status_or_none()
            here = self.state.backend.hostname()
            names = [n for n, _ in status.nodes] if status is not None else []
            return matching([n for n in names if n != here], text)
        return []

    def ui_command_upgrade(self, file: str) -> None:
        """
        Rolling upgrade of both boxes to a new root image: the other box
        first, then this one. Each box gets the image in its standby root
        slot, goes into standby (its targets move to the other box with the
        pause of a planned move), reboots into the new root and leaves
        standby once healthy; targets come back as their failback says. A
        box whose new root does not come up healthy boots its old root
        again and the upgrade stops with a report (docs/upgrade.md). This
        box reboots at the end.

        PARAMETERS
        ==========

        file
        ----
        The root image from image/build (iscsiha-root.img), with its
        .sha256 and .json files beside it.

        EXAMPLE
        =======
        upgrade file=/var/tmp/iscsiha-root.img

        SEE ALSO
        ========
        status
        """
        done = self.state.backend.upgrade_pair(file, self.state.progress)
        self.say(summary(done))

