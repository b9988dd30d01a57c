"""The peer channel under hostile input: what `iscsiha node STEP` refuses before anything
runs, what it writes and where, and the typed requests' decoder on any JSON."""

from __future__ import annotations

import io
import json
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any, cast

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from iscsiha.alerts import config as alert_settings
from iscsiha.cli import main as cli
from iscsiha.commands import node_steps
from iscsiha.errors import IscsihaError, Report, Secret
from iscsiha.executors.runner import CommandResult, Runner
from iscsiha.plan.drbd import AUTHKEY_PATH
from iscsiha.plan.peer_ssh import authorized_keys, known_hosts, public_key_problem
from iscsiha.protocol import codec
from iscsiha.protocol import messages as m
from tests.conftest import EXAMPLE
from tests.unit import ssh_keys

DESIRED = EXAMPLE.read_text()
KEY = b"k" * 256


class RecordingRunner:
    """Every command a step runs; lvm and drbdadm answer as on an empty box."""

    def __init__(self) -> None:
        self.calls: list[list[str]] = []

    def run(self, argv: Sequence[str], *, input: str | None = None, check: bool = True,
            timeout: float | None = 60.0, env: Any = None) -> CommandResult:
        self.calls.append(list(argv))
        return CommandResult(tuple(argv), 0, "", "", 0.0)


@pytest.fixture
def box(tmp_path: Path) -> tuple[node_steps.Box, RecordingRunner]:
    runner = RecordingRunner()
    (tmp_path / "drbd.d").mkdir()
    return node_steps.Box(
        cast(Runner, runner), lambda path: "", lambda path: KEY if path == AUTHKEY_PATH else None,
        secrets_dir=str(tmp_path / "secrets"), desired_path=str(tmp_path / "desired.toml"),
        drbd_dir=str(tmp_path / "drbd.d"), alerts_group=None), runner


def serve(box: tuple[node_steps.Box, RecordingRunner], step: str, request: Any) -> Any:
    raw = request if isinstance(request, str) else json.dumps(request)
    ok, out = node_steps.serve(box[0], step, raw)
    return ok, json.loads(out)


def refused(box: tuple[node_steps.Box, RecordingRunner], step: str, request: Any
            ) -> list[tuple[str, str]]:
    ok, out = serve(box, step, request)
    assert not ok, out
    return [(r["code"], r["field"]) for r in out["reports"]]


def files_under(root: Path) -> list[str]:
    return sorted(str(p.relative_to(root)) for p in root.rglob("*"))


# -- the findings ---------------------------------------------------------------------------

def test_a_secret_parameter_name_cannot_point_outside_the_secrets_folder(
        box: tuple[node_steps.Box, RecordingRunner], tmp_path: Path) -> None:
    # The request that wrote /root/.ssh/authorized_keys as root before the typed protocol.
    forged = {"secrets": {"fence-san-a": {"../../../../../../root/.ssh/authorized_keys":
                                          "ssh-ed25519 AAAA attacker"}}}
    assert refused(box, "write-secrets", forged) == [("peer-message-refused",
                                                      "write-secrets.secrets")]
    assert files_under(tmp_path) == ["drbd.d"]


def test_secrets_are_the_ones_this_box_s_own_plan_expects(
        box: tuple[node_steps.Box, RecordingRunner], tmp_path: Path) -> None:
    ok, _ = serve(box, "write-secrets", {"desired": DESIRED})
    assert ok
    written = files_under(tmp_path / "secrets")
    assert "fence-san-a/password" in written and "fence-san-a/password.sign" in written
    assert all(not f.startswith(".") and ".." not in f for f in written)
    assert (tmp_path / "secrets/fence-san-a/password").read_text() == "bmc-a-secret"
    assert os.stat(tmp_path / "secrets/fence-san-a/password").st_mode & 0o7777 == 0o600


def test_write_secrets_leaves_the_alert_settings_for_the_agent_group_readable_only(
        box: tuple[node_steps.Box, RecordingRunner], tmp_path: Path) -> None:
    ok, _ = serve(box, "write-secrets", {"desired": DESIRED})
    assert ok
    path = tmp_path / "alerts.json"
    # Read by hacluster (the haclient group), never by other local users.
    assert os.stat(path).st_mode & 0o7777 == 0o640
    settings = alert_settings.read(str(path), lambda p: Path(p).read_bytes())
    assert settings.nodes == ("san-a", "san-b")
    assert settings.volume_groups == ("data",)


def test_a_planted_link_for_a_secret_folder_is_refused(
        box: tuple[node_steps.Box, RecordingRunner], tmp_path: Path) -> None:
    (tmp_path / "secrets").mkdir()
    (tmp_path / "elsewhere").mkdir()
    (tmp_path / "secrets/fence-san-a").symlink_to(tmp_path / "elsewhere")
    assert refused(box, "write-secrets", {"desired": DESIRED}) == [
        ("secret-folder-unsafe", "folder")]
    assert list((tmp_path / "elsewhere").iterdir()) == []


def test_file_content_and_mode_from_the_peer_are_no_longer_taken(
        box: tuple[node_steps.Box, RecordingRunner], tmp_path: Path) -> None:
    handler = 'resource vm { handlers { fence-peer "/bin/sh -c id"; } }'
    forged = {"files": [["/etc/drbd.d/vm.res", handler, 0o4777]]}
    assert refused(box, "write-files", forged) == [("unknown-step", "step")]
    assert refused(box, "write-drbd-files", {**forged, "desired": DESIRED, "resources": {}}
                   ) == [("peer-message-refused", "write-drbd-files.files")]
    assert files_under(tmp_path / "drbd.d") == []


def allocation(**change: Any) -> dict[str, Any]:
    vm = {"port": 7789, "volumes": {"vmstore": [0, 0], "db": [1, 1]}}
    return {"desired": DESIRED, "resources": {"vm": {**vm, **change}}}


def test_drbd_files_are_rendered_here_with_this_box_s_key_and_mode(
        box: tuple[node_steps.Box, RecordingRunner], tmp_path: Path) -> None:
    ok, out = serve(box, "write-drbd-files", allocation())
    assert ok and out == {"paths": [str(tmp_path / "drbd.d/vm.res")]}
    text = (tmp_path / "drbd.d/vm.res").read_text()
    assert "resource vm {" in text and "minor 1;" in text and "port" not in text
    assert ":7789;" in text
    assert '"/usr/lib/iscsiha/drbd-handler --alert drbd-disconnected crm-fence-peer.sh' in text
    assert os.stat(tmp_path / "drbd.d/vm.res").st_mode & 0o7777 == 0o600
    assert serve(box, "write-drbd-files", allocation()) == (True, {"paths": []})


@pytest.mark.parametrize(("change", "code"), [
    ({"volumes": {"vmstore": [0, 0]}}, "drbd-volumes-mismatch"),
    ({"volumes": {"vmstore": [0, 0], "db": [0, 1]}}, "drbd-volume-number-twice"),
    ({"volumes": {"vmstore": [0, 3], "db": [1, 3]}}, "drbd-minor-twice"),
])
def test_an_allocation_that_does_not_fit_the_desired_state_is_refused(
        box: tuple[node_steps.Box, RecordingRunner], tmp_path: Path,
        change: dict[str, Any], code: str) -> None:
    assert refused(box, "write-drbd-files", allocation(**change))[0][0] == code
    assert files_under(tmp_path / "drbd.d") == []


def test_a_target_not_in_the_desired_state_gets_no_file(
        box: tuple[node_steps.Box, RecordingRunner], tmp_path: Path) -> None:
    request = {"desired": DESIRED, "resources": {"evil": {"port": 7790, "volumes": {}}}}
    assert refused(box, "write-drbd-files", request) == [("unknown-target", "resources")]
    assert files_under(tmp_path / "drbd.d") == []


def test_an_invalid_desired_state_writes_nothing(
        box: tuple[node_steps.Box, RecordingRunner], tmp_path: Path) -> None:
    bad = DESIRED.replace('name = "vm"', 'name = "vm\\n"')
    assert refused(box, "write-desired", {"desired": bad})
    assert not (tmp_path / "desired.toml").exists()
    assert serve(box, "write-desired", {"desired": DESIRED})[0]
    assert os.stat(tmp_path / "desired.toml").st_mode & 0o7777 == 0o600


@pytest.mark.parametrize("name", ["--force", "-c/tmp/x.conf", "vm\n", "vm\nrm", "../vm",
                                  "v\u0663", "VM", "", "x" * 40])
def test_option_like_and_malformed_names_never_reach_a_command(
        box: tuple[node_steps.Box, RecordingRunner], name: str) -> None:
    assert refused(box, "create-volumes", {"volumes": [[name, "data", 1 << 30]]}) == [
        ("peer-message-refused", "create-volumes.volumes[0][0]")]
    assert refused(box, "up", {"resources": [name]})
    assert refused(box, "drbd-role", {"role": "primary", "volumes": [f"{name}/0"]})
    assert refused(box, "delete-volumes", {"volumes": [[name, "data"]]})
    assert refused(box, "delete-volumes", {"volumes": [["vm", f"-{name}"]]})
    assert box[1].calls == []


@pytest.mark.parametrize(("step", "request_"), [
    ("create-volumes", {"volumes": [["vm", "data", 10 ** 30]]}),
    ("create-volumes", {"volumes": [["vm", "data", -1]]}),
    ("create-volumes", {"volumes": [["vm", "data", True]]}),
    ("create-volumes", {"volumes": [["vm", "-data", 1024]]}),
    ("sync-new", {"volumes": [["vm/0", 0]], "timeout": "nan"}),
    ("sync-new", {"volumes": [["vm/0", 1 << 21]]}),
    ("sync-new", {"volumes": [["vm/0", 0]], "timeout": 1e308}),
    ("drbd-role", {"role": "primary; rm", "volumes": []}),
    ("drbd-role", {"role": "primary", "volumes": ["vm/999"]}),
    ("split-brain-discard", {"resource": "vm", "minor": 0, "node": "san-a\n"}),
    ("facts", {"vgs": ["data"], "volumes": [], "drbd": {}, "extra": 1}),
    ("facts", {"vgs": "data", "volumes": [], "drbd": {}}),
])
def test_out_of_range_and_wrongly_typed_fields_are_refused(
        box: tuple[node_steps.Box, RecordingRunner], step: str, request_: Any) -> None:
    assert refused(box, step, request_)[0][0] == "peer-message-refused"
    assert box[1].calls == []


def test_a_nan_timeout_in_json_is_refused(box: tuple[node_steps.Box, RecordingRunner]) -> None:
    assert refused(box, "sync-new", '{"volumes": [], "timeout": NaN}')[0][0] == (
        "peer-message-refused")


@pytest.mark.parametrize("raw", ["", "{", "[" * 100_000, "\x00", "{}" * 3, '"x"'])
def test_malformed_json_is_a_report_not_a_traceback(
        box: tuple[node_steps.Box, RecordingRunner], raw: str) -> None:
    codes = refused(box, "up", raw)
    assert codes[0][0] in {"peer-message-not-json", "peer-message-refused"}


def test_the_node_command_refuses_garbage_on_stdin_with_exit_1(
        monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.setattr("sys.stdin", io.TextIOWrapper(io.BytesIO(b"\xff\xfe{not json")))
    assert cli.main(["node", "up"]) == cli.EXIT_REFUSED
    out = json.loads(capsys.readouterr().out)
    assert out["reports"][0]["code"] == "peer-message-not-json"


@pytest.mark.parametrize("command", ['/usr/bin/iscsiha node "up', "rm -rf /",
                                     "/usr/bin/iscsiha node write-files"])
def test_a_forced_command_other_than_a_known_step_is_refused(
        monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str],
        command: str) -> None:
    monkeypatch.setenv("SSH_ORIGINAL_COMMAND", command)
    assert cli.main(["node", "from-peer"]) == cli.EXIT_REFUSED
    assert json.loads(capsys.readouterr().out)["reports"][0]["code"] == "peer-command-refused"


def test_reports_cross_the_wire_with_secrets_shown_by_length_only() -> None:
    wire = codec.reports_json([Report("bad", "auth.secret", Secret("hv-Secret-0001"), "x"),
                               Report("bad", "name", "a\x1b[2Jb", "y")])
    assert "hv-Secret-0001" not in wire
    got = codec.reports_from(wire)
    assert got is not None
    assert [r.value for r in got] == ["<secret, 14 characters>", "a\\x1b[2Jb"]


def test_a_refused_desired_state_is_not_echoed(
        box: tuple[node_steps.Box, RecordingRunner]) -> None:
    ok, out = serve(box, "write-desired", {"desired": DESIRED + "\x1b"})
    assert not ok and "bmc-a-secret" not in json.dumps(out)
    assert out["reports"][0]["value"] == f"<secret, {len(DESIRED) + 1} characters>"


def test_a_reply_with_control_characters_is_refused() -> None:
    reply = {"commands": ["drbdadm connect vm\x1b]0;owned\x07"]}
    with pytest.raises(IscsihaError) as exc:
        codec.decode(m.Commands, reply, "reply")
    assert exc.value.reports[0].field == "reply.commands[0]"


# -- SSH keys from the other box ------------------------------------------------------------

@pytest.mark.parametrize("key", [
    f"{ssh_keys.CLUSTER}\nssh-ed25519 AAAA attacker",
    f'{ssh_keys.CLUSTER} x" command="/bin/sh',
    "ssh-ed25519 AAAA",  # not a key of its type
    f"ssh-dss {ssh_keys.CLUSTER.split()[1]}",
    "",
])
def test_a_public_key_that_would_add_a_line_or_options_is_refused(key: str) -> None:
    assert public_key_problem(key) is not None
    with pytest.raises(IscsihaError):
        authorized_keys(key, [])
    with pytest.raises(IscsihaError):
        known_hosts([([], key)])


def test_a_key_as_ssh_keygen_writes_it_is_accepted() -> None:
    assert public_key_problem(f"{ssh_keys.CLUSTER} iscsiha-cluster\n") is None


# -- every request type on any JSON ---------------------------------------------------------

json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=20),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=10), inner,
                                                                 max_size=4),
    max_leaves=20)


def near(kind: type) -> st.SearchStrategy[Any]:
    """JSON shaped like ``kind``'s requests: its own keys with any values."""
    names = [f for f in getattr(kind, "__dataclass_fields__", {})]
    return st.dictionaries(st.sampled_from(names), json_values) if names else json_values


@settings(max_examples=300, deadline=None)
@given(step=st.sampled_from(sorted(node_steps.STEPS)), data=st.data())
def test_any_json_decodes_to_a_checked_request_or_a_report(step: str, data: st.DataObject
                                                           ) -> None:
    spec = node_steps.STEPS[step][0]
    value = data.draw(st.one_of(json_values, near(spec.request)))
    try:
        request = codec.decode(spec.request, value, step)
    except IscsihaError as exc:
        assert exc.reports and exc.reports[0].code == "peer-message-refused"
        return
    assert codec.decode(spec.request, json.loads(codec.dumps(request)), step) == request


@settings(max_examples=300, deadline=None)
@given(raw=st.binary(max_size=200) | st.text(max_size=200))
def test_any_bytes_on_stdin_give_a_report_or_a_request(raw: bytes | str) -> None:
    try:
        codec.decode(m.FactsRequest, codec.loads(raw), "facts")
    except IscsihaError as exc:
        assert exc.reports[0].code.startswith("peer-message-")
