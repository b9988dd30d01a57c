"""ocf:iscsiha:target: an iSCSI target with all its LUNs, applied in one pass.

start configures the target, its ACLs and all LUNs on block backstores over the
DRBD devices, then unblocks the portals' port and tickles the connections the
previous box handed over; stop hands the connections over, blocks the port both ways
first, then removes the target and its backstores so DRBD can be demoted. monitor
reads, and keeps the list handed over current in case this box dies.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Callable, Mapping
from typing import TextIO

from iscsiha.agents.ocf import AgentError, AgentSpec, Param, Params, Rc, run
from iscsiha.errors import IscsihaError
from iscsiha.executors.addresses import Addresses
from iscsiha.executors.handover import Handover
from iscsiha.executors.lio import Lio, Secrets, TargetState
from iscsiha.executors.login_watch import watch_logins
from iscsiha.executors.portblock import PortBlock
from iscsiha.executors.reservations import ReservationStore
from iscsiha.executors.runner import Runner
from iscsiha.executors.tcp_sessions import Connection, established
from iscsiha.model.types import IPAddress
from iscsiha.plan.agent_params import TargetParams

Connections = Callable[[list[tuple[IPAddress, int]]], list[Connection]]

SPEC = AgentSpec(
    name="target",
    shortdesc="iSCSI target with its LUNs (LIO)",
    longdesc=("Creates an LIO iSCSI target with its portals, authentication, ACLs and all "
              "its LUNs on block backstores over DRBD devices, then opens the portals' port."),
    params=(
        Param("iqn", "Target name", "The target's iSCSI name.", required=True, unique=True),
        Param("portals", "Portals", "Space-separated ADDRESS:PORT the target listens on.",
              required=True),
        Param("luns", "LUNs", "Space-separated LUN:VOLUME:/dev/DEVICE:SERIAL.", required=True),
        Param("initiators", "Initiators", "Space-separated initiator names allowed in."),
        Param("allow_any_initiator", "Allow any initiator",
              "Let any initiator log in (no ACLs). Off unless asked for.", kind="boolean",
              default="false"),
        Param("auth", "Authentication", "none, chap or mutual-chap.", default="none"),
        Param("chap_user", "CHAP user", "The user name initiators present."),
        Param("chap_secret", "CHAP secret", "Kept out of the CIB (lrm://)."),
        Param("mutual_user", "Mutual CHAP user", "The user name the target presents."),
        Param("mutual_secret", "Mutual CHAP secret", "Kept out of the CIB (lrm://)."),
        Param("reservations", "Reservations store",
              "The DRBD device holding the LUNs' SCSI persistent reservations; none: "
              "they are kept in memory only and lost on a move."),
    ),
)


class TargetAgent:
    spec = SPEC

    def __init__(self, lio: Lio, portblock: PortBlock, addresses: Callable[[], Addresses],
                 handover: Handover, store: ReservationStore,
                 connections: Connections = established) -> None:
        self._lio = lio
        self._store = store
        self._portblock = portblock
        self._addresses = addresses
        self._handover = handover
        self._connections = connections

    def validate(self, params: Params) -> None:
        _parse(params)

    def start(self, params: Params) -> Rc:
        spec = _parse(params)
        if self._differences(spec, self._lio.target_state(spec.iqn)):
            devices = [(f"LUN {lun.number}", lun.device) for lun in spec.luns]
            if spec.reservations is not None:
                devices.append(("the reservations", spec.reservations))
            for what, device in devices:
                if not os.path.exists(device):
                    raise AgentError(Rc.ERR_GENERIC, f"{device} ({what}) is "
                                     "missing: is DRBD promoted here?")
            store = None if spec.reservations is None else self._store.mount(spec.reservations)
            self._lio.apply_target(spec, Secrets.from_params(params), store)
        for portal in spec.portals:
            self._portblock.unblock(portal.address, portal.port)
        self._handover.tickle(_endpoints(spec))
        watch_logins(spec.iqn)  # the first initiator's login, for `status --timeline`
        return Rc.SUCCESS

    def stop(self, params: Params) -> Rc:
        spec = _parse(params)
        self._handover.record(self._connections(_endpoints(spec)))
        with self._addresses() as addrs:
            for portal in spec.portals:
                # An address not held here gets no traffic here: nothing to block.
                holder = addrs.holder(portal.address)
                if holder is not None:
                    # Outgoing too: the target's FINs would end the connections the
                    # next box is to tickle.
                    self._portblock.block(portal.address, portal.port, holder, outgoing=True)
        self._lio.remove_target(spec.iqn, spec.luns)
        if spec.reservations is not None:
            # LIO holds no APTPL file open between commands: nothing keeps it busy.
            self._store.unmount(spec.reservations)
        return Rc.SUCCESS

    def monitor(self, params: Params) -> Rc:
        spec = _parse(params)
        state = self._lio.target_state(spec.iqn)
        if state is None:
            return Rc.NOT_RUNNING
        problems = self._differences(spec, state)
        problems += [f"port {p} is blocked" for p in spec.portals
                     if self._portblock.is_blocked(p.address, p.port)]
        if problems:
            raise AgentError(Rc.ERR_GENERIC, "; ".join(problems))
        self._handover.keep(self._connections(_endpoints(spec)))
        return Rc.SUCCESS

    def _differences(self, spec: TargetParams, state: TargetState | None) -> list[str]:
        problems = _differences(spec, state)
        if spec.reservations is not None and not self._store.mounted(spec.reservations):
            problems.append(f"the reservations store {spec.reservations} is not mounted")
        return problems


def _endpoints(spec: TargetParams) -> list[tuple[IPAddress, int]]:
    return [(p.address, p.port) for p in spec.portals]


def _differences(spec: TargetParams, state: TargetState | None) -> list[str]:
    if state is None:
        return ["target absent"]
    problems = []
    if not state.enabled:
        problems.append("TPG disabled")
    want_portals = {(str(p.address), p.port) for p in spec.portals}
    if state.portals != want_portals:
        problems.append(f"portals {sorted(state.portals)} != {sorted(want_portals)}")
    want_luns = {lun.number: lun.device for lun in spec.luns}
    if dict(state.luns) != want_luns:
        problems.append(f"LUNs {dict(state.luns)} != {want_luns}")
    if state.acls != frozenset(spec.initiators):
        problems.append(f"ACLs {sorted(state.acls)} != {sorted(spec.initiators)}")
    return problems


def _parse(params: Params) -> TargetParams:
    try:
        return TargetParams.from_params(params)
    except IscsihaError as exc:
        raise AgentError(Rc.ERR_CONFIGURED, str(exc)) from exc


def dispatch(argv: list[str], environ: Mapping[str, str], out: TextIO, err: TextIO) -> int:
    """One action, from its argv and environment (the agent helper's entry): the
    resource's name comes from ``environ``, never from this process's own."""
    runner = Runner()
    handover = Handover(runner, environ.get("OCF_RESOURCE_INSTANCE"))
    return run(lambda: TargetAgent(Lio(), PortBlock(runner), Addresses, handover,
                                   ReservationStore(runner)), SPEC, argv, environ, out, err)


def main(argv: list[str] | None = None) -> int:
    return dispatch(argv or sys.argv, os.environ, sys.stdout, sys.stderr)
