"""The OCF agent API: metadata against the OCF schema, parameters, probes, exit codes."""

from __future__ import annotations

import io
import shutil
from pathlib import Path

import pytest

from iscsiha.agents.ocf import AgentError, AgentSpec, Param, Params, Rc, metadata_xml, run
from iscsiha.executors.runner import Runner
from tests.conftest import skip_or_fail

OCF_RNG = Path("/usr/share/resource-agents/metadata.rng")

SPEC = AgentSpec(
    name="example",
    shortdesc="An agent for tests",
    longdesc="Starts and stops nothing but a flag, so the dispatch can be checked.",
    params=(
        Param("name", "Name", "The name of the thing.", required=True, unique=True),
        Param("count", "Count", "How many.", kind="integer", default="1"),
        Param("fast", "Fast", "Whether to hurry.", kind="boolean", default="false"),
    ),
)


class FlagAgent:
    spec = SPEC

    def __init__(self) -> None:
        self.running = False

    def validate(self, params: Params) -> None:
        if params["name"] == "bad":
            raise AgentError(Rc.ERR_CONFIGURED, "name 'bad' is not allowed")

    def start(self, params: Params) -> Rc:
        self.running = True
        return Rc.SUCCESS

    def stop(self, params: Params) -> Rc:
        self.running = False
        return Rc.SUCCESS

    def monitor(self, params: Params) -> Rc:
        if params["name"] == "broken":
            raise AgentError(Rc.ERR_INSTALLED, "tool missing")
        return Rc.SUCCESS if self.running else Rc.NOT_RUNNING


def _run(action: str, **env: str) -> tuple[int, str, str]:
    out, err = io.StringIO(), io.StringIO()
    rc = run(FlagAgent, SPEC, ["example", action], env, out, err)
    return rc, out.getvalue(), err.getvalue()


def test_metadata_is_valid_against_the_ocf_schema(tmp_path: Path) -> None:
    xmllint = shutil.which("xmllint")
    if xmllint is None or not OCF_RNG.exists():
        skip_or_fail("needs xmllint (libxml2-utils) and the OCF schema (resource-agents)")
        return
    meta = tmp_path / "meta.xml"
    meta.write_text(metadata_xml(SPEC))
    result = Runner().run([xmllint, "--noout", "--relaxng", str(OCF_RNG), str(meta)],
                          check=False)
    assert result.returncode == 0, result.stderr
    # ocf-tester checks the DOCTYPE's DTD, found next to the schema.
    (tmp_path / "ra-api-1.dtd").write_bytes((OCF_RNG.parent / "ra-api-1.dtd").read_bytes())
    result = Runner().run([xmllint, "--noout", "--valid", str(meta)], check=False)
    assert result.returncode == 0, result.stderr


def test_metadata_declares_parameters_and_action_timeouts() -> None:
    rc, out, _ = _run("meta-data")
    assert rc == 0
    assert '<parameter name="name" unique="1" required="1">' in out
    assert '<content type="integer" default="1" />' in out
    assert '<action name="monitor" timeout="20s" interval="10s" />' in out


def test_missing_required_parameter_is_err_configured() -> None:
    rc, _, err = _run("start")
    assert rc == Rc.ERR_CONFIGURED
    assert "parameter name is required" in err


def test_bad_typed_parameter_is_named() -> None:
    rc, _, err = _run("validate-all", OCF_RESKEY_name="x", OCF_RESKEY_count="many")
    assert rc == Rc.ERR_CONFIGURED and "count='many'" in err


def test_validate_all_runs_the_agent_checks() -> None:
    assert _run("validate-all", OCF_RESKEY_name="ok")[0] == Rc.SUCCESS
    assert _run("validate-all", OCF_RESKEY_name="bad")[0] == Rc.ERR_CONFIGURED


def test_probe_of_an_agent_that_cannot_run_here_reports_not_running() -> None:
    rc, _, _ = _run("monitor", OCF_RESKEY_name="broken", OCF_RESKEY_CRM_meta_interval="0")
    assert rc == Rc.NOT_RUNNING
    rc, _, _ = _run("monitor", OCF_RESKEY_name="broken", OCF_RESKEY_CRM_meta_interval="10000")
    assert rc == Rc.ERR_INSTALLED


def test_unknown_action_is_unimplemented_and_no_action_is_a_usage_error() -> None:
    assert _run("migrate_to", OCF_RESKEY_name="x")[0] == Rc.ERR_UNIMPLEMENTED
    assert run(FlagAgent, SPEC, ["example"], {}, io.StringIO(), io.StringIO()) == Rc.ERR_ARGS


@pytest.mark.parametrize("action", ["start", "stop", "monitor"])
def test_actions_dispatch_to_the_agent(action: str) -> None:
    expected = Rc.NOT_RUNNING if action == "monitor" else Rc.SUCCESS
    assert _run(action, OCF_RESKEY_name="x")[0] == expected
