"""iscsiha-fence-ipmitool: fence_ipmilan's ipmitool, the BMC password never in argv."""

from __future__ import annotations

import hashlib
import os
import xml.etree.ElementTree as ET
from pathlib import Path
from typing import Any

import pytest

from iscsiha import fence_ipmitool
from iscsiha.commands import node_steps
from iscsiha.model.load import load_text
from iscsiha.plan import cib
from iscsiha.plan.plan import make_plan
from tests.conftest import EXAMPLE

# What fence_ipmilan (fence-agents 4.x create_command) runs, given no password.
FROM_FENCE_IPMILAN = ["-I", "lanplus", "-H", "10.0.0.22", "-p", "623", "-U", "fence",
                      "-P", "", "chassis", "power", "status"]


def store(secrets: Path, device: str, value: str, sign: str | None = None) -> None:
    folder = secrets / device
    folder.mkdir(parents=True)
    (folder / "password").write_text(value)
    (folder / "password.sign").write_text(
        sign or hashlib.md5(value.encode(), usedforsecurity=False).hexdigest())


@pytest.fixture
def secrets(tmp_path: Path) -> Path:
    store(tmp_path, "fence-san-a", "bmc-a-secret")
    store(tmp_path, "fence-san-b", "bmc-b-secret")
    return tmp_path


def test_the_password_goes_in_the_environment_and_argv_gets_minus_e(secrets: Path) -> None:
    argv, env = fence_ipmitool.prepare(FROM_FENCE_IPMILAN, EXAMPLE.read_text(), secrets,
                                       {"PATH": "/usr/bin", "IPMITOOL_PASSWORD": "stale"})
    assert argv == ["/usr/bin/ipmitool", "-E", "-I", "lanplus", "-H", "10.0.0.22", "-p", "623",
                    "-U", "fence", "chassis", "power", "status"]
    assert env == {"PATH": "/usr/bin", "IPMI_PASSWORD": "bmc-b-secret"}
    assert not any("secret" in word for word in argv)


def test_a_password_fence_ipmilan_was_given_is_dropped_from_argv(secrets: Path) -> None:
    args = [w if w else "leaked" for w in FROM_FENCE_IPMILAN]
    argv, _ = fence_ipmitool.prepare(args, EXAMPLE.read_text(), secrets, {})
    assert "leaked" not in argv and "-P" not in argv


@pytest.mark.parametrize(("args", "said"), [
    (["chassis", "power", "status"], "no BMC address (-H)"),
    (["-H", "10.0.0.99", "chassis", "power", "status"],
     "no node in /etc/iscsiha/desired.toml has the BMC '10.0.0.99' (known: 10.0.0.21, 10.0.0.22)"),
])
def test_an_unknown_bmc_is_refused_naming_the_known_ones(secrets: Path, args: list[str],
                                                         said: str) -> None:
    with pytest.raises(fence_ipmitool.FenceError) as caught:
        fence_ipmitool.prepare(args, EXAMPLE.read_text(), secrets, {})
    assert said in str(caught.value)


def test_a_password_that_does_not_match_its_sign_is_refused(tmp_path: Path) -> None:
    store(tmp_path, "fence-san-b", "bmc-b-secret", sign="0" * 32)
    with pytest.raises(fence_ipmitool.FenceError) as caught:
        fence_ipmitool.prepare(FROM_FENCE_IPMILAN, EXAMPLE.read_text(), tmp_path, {})
    assert "does not match its .sign" in str(caught.value)
    assert "bmc-b-secret" not in str(caught.value)


def test_a_missing_store_and_a_broken_desired_state_are_refused(tmp_path: Path) -> None:
    with pytest.raises(fence_ipmitool.FenceError, match="cannot read the password of "
                                                        "fence-san-b"):
        fence_ipmitool.prepare(FROM_FENCE_IPMILAN, EXAMPLE.read_text(), tmp_path, {})
    with pytest.raises(fence_ipmitool.FenceError, match="cannot be read as TOML"):
        fence_ipmitool.prepare(FROM_FENCE_IPMILAN, "[nodes", tmp_path, {})


@pytest.fixture
def installed(secrets: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The example as this box's desired state, the fence passwords in the store."""
    desired = tmp_path / "desired.toml"
    desired.write_text(EXAMPLE.read_text())
    monkeypatch.setattr(fence_ipmitool, "DESIRED_PATH", str(desired))
    monkeypatch.setattr(fence_ipmitool, "SECRETS_DIR", str(secrets))


@pytest.mark.usefixtures("installed")
def test_main_execs_ipmitool_and_reports_failures_without_secrets(
        monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    ran: list[Any] = []

    def execve(path: str, argv: list[str], env: dict[str, str]) -> None:
        ran.append((path, argv, env["IPMI_PASSWORD"]))
        raise FileNotFoundError(2, "No such file or directory")

    monkeypatch.setattr(os, "execve", execve)
    pinged: list[tuple[str, int]] = []
    monkeypatch.setattr(fence_ipmitool, "bmc_answers",
                        lambda host, port: pinged.append((host, port)) or True)
    assert fence_ipmitool.main(FROM_FENCE_IPMILAN) == 1
    assert pinged == [("10.0.0.22", 623)]
    assert ran == [("/usr/bin/ipmitool", fence_ipmitool.ipmitool_argv(FROM_FENCE_IPMILAN),
                    "bmc-b-secret")]
    err = capsys.readouterr().err
    assert "cannot run /usr/bin/ipmitool" in err and "bmc-b-secret" not in err


def test_its_paths_are_those_apply_writes() -> None:
    assert fence_ipmitool.DESIRED_PATH == node_steps.DESIRED_PATH
    assert fence_ipmitool.SECRETS_DIR == node_steps.SECRETS_DIR


def test_the_cib_runs_it_and_the_password_stays_in_the_lrm_store() -> None:
    config = load_text(EXAMPLE.read_text())
    plan = make_plan(config)
    fences = [p for p in ET.fromstring(plan.cib).iter("primitive")
              if p.get("type") == "fence_ipmilan"]
    assert len(fences) == 2
    for prim in fences:
        params = cib.nvpairs(prim.find("instance_attributes"))
        assert params["ipmitool_path"] == "/usr/bin/iscsiha-fence-ipmitool"
        assert "password" not in params
        name = prim.get("id", "").removeprefix("fence-")
        bmc = next(n.bmc for n in config.cluster.nodes if n.name == name)
        assert plan.secrets[(f"fence-{name}", fence_ipmitool.PARAMETER)] == bmc.password
        assert fence_ipmitool.device_for(EXAMPLE.read_text(), str(bmc.address)) == \
            prim.get("id")


@pytest.mark.usefixtures("installed")
def test_a_bmc_that_does_not_answer_its_ping_is_not_asked(
        monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.setattr(fence_ipmitool, "bmc_answers", lambda host, port: False)
    ran: list[str] = []
    monkeypatch.setattr(os, "execve", lambda path, argv, env: ran.append(path))
    assert fence_ipmitool.main(FROM_FENCE_IPMILAN) == 1
    assert ran == []
    assert "the BMC 10.0.0.22 (UDP port 623) does not answer" in capsys.readouterr().err


@pytest.mark.parametrize("port", ["0", "65536", "ipmi", "", "٦٢٣"])
def test_a_bmc_port_that_is_no_port_is_refused(secrets: Path, port: str) -> None:
    args = ["-H", "10.0.0.22", "-p", port, "chassis", "power", "status"]
    with pytest.raises(fence_ipmitool.FenceError, match=f"the BMC port \\(-p\\) '{port}'"):
        fence_ipmitool.bmc_of(args)


def test_the_ping_is_an_asf_presence_ping_as_ipmi_over_lan_defines_it() -> None:
    # RMCP 6.0, sequence 0xff (no ACK), class ASF; IANA 4542; type 0x80; tag; 0; length 0.
    assert fence_ipmitool.ping_packet(7) == bytes.fromhex("0600ff06000011be80070000")


def test_only_the_pong_to_our_tag_counts() -> None:
    pong = bytes.fromhex("0600ff06000011be40070010") + bytes(16)
    assert fence_ipmitool.is_pong(pong, 7)
    assert not fence_ipmitool.is_pong(pong, 6)
    assert not fence_ipmitool.is_pong(fence_ipmitool.ping_packet(7), 7)  # our own ping
    assert not fence_ipmitool.is_pong(pong[:11], 7)
    assert not fence_ipmitool.is_pong(b"\x06\x00\xff\x07" + pong[4:], 7)  # class IPMI
