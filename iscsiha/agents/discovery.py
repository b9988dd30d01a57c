"""ocf:iscsiha:discovery: LIO's discovery authentication, global to a box (a clone).

Only planned when discovery CHAP is wanted; stop turns it off again.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Mapping
from typing import TextIO

from iscsiha.agents.ocf import AgentError, AgentSpec, Param, Params, Rc, run
from iscsiha.errors import IscsihaError
from iscsiha.executors.lio import Lio, Secrets
from iscsiha.model.types import AuthMode
from iscsiha.plan.agent_params import AuthParams

SPEC = AgentSpec(
    name="discovery",
    shortdesc="iSCSI discovery authentication (LIO)",
    longdesc="Requires CHAP (or mutual CHAP) from initiators before they may list targets.",
    params=(
        Param("auth", "Authentication", "chap or mutual-chap.", required=True),
        Param("chap_user", "CHAP user", "The user name initiators present.", required=True),
        Param("chap_secret", "CHAP secret", "Kept out of the CIB (lrm://).", required=True),
        Param("mutual_user", "Mutual CHAP user", "The user name the box presents."),
        Param("mutual_secret", "Mutual CHAP secret", "Kept out of the CIB (lrm://)."),
    ),
)


class DiscoveryAgent:
    spec = SPEC

    def __init__(self, lio: Lio) -> None:
        self._lio = lio

    def validate(self, params: Params) -> None:
        _parse(params)

    def start(self, params: Params) -> Rc:
        self._lio.set_discovery_auth(_parse(params), Secrets.from_params(params))
        return Rc.SUCCESS

    def stop(self, params: Params) -> Rc:
        self._lio.set_discovery_auth(AuthParams(AuthMode.NONE), Secrets())
        return Rc.SUCCESS

    def monitor(self, params: Params) -> Rc:
        return Rc.SUCCESS if self._lio.discovery_auth_enabled() else Rc.NOT_RUNNING


def _parse(params: Params) -> AuthParams:
    try:
        auth = AuthParams.from_params(params)
    except IscsihaError as exc:
        raise AgentError(Rc.ERR_CONFIGURED, str(exc)) from exc
    if auth.mode is AuthMode.NONE:
        raise AgentError(Rc.ERR_CONFIGURED, "auth=none: this resource is for CHAP only")
    return auth


def dispatch(argv: list[str], environ: Mapping[str, str], out: TextIO, err: TextIO) -> int:
    """One action, from its argv and environment (the agent helper's entry)."""
    return run(lambda: DiscoveryAgent(Lio()), SPEC, argv, environ, out, err)


def main(argv: list[str] | None = None) -> int:
    return dispatch(argv or sys.argv, os.environ, sys.stdout, sys.stderr)
