"""The commands' outside world: which boxes the real env reaches, and what a command
asks of the boxes when it has none or is told not to."""

from __future__ import annotations

import tomllib
from pathlib import Path
from typing import cast

import pytest

from iscsiha.commands import apply as apply_cmd
from iscsiha.commands.cluster_env import Boxes, real_env
from iscsiha.commands.targets import live_status
from iscsiha.errors import IscsihaError
from iscsiha.executors.drbd import ProcDevice, parse_proc_drbd
from iscsiha.executors.runner import CommandResult, Runner
from iscsiha.model.load import load_data
from tests.conftest import EXAMPLE
from tests.unit.env_fakes import Untouchable, fake_env
from tests.unit.test_status import RESYNC, FakePacemaker, mon

NO_COMMANDS = cast(Runner, Untouchable("the runner"))  # building the env runs nothing


def test_the_boxes_are_those_of_the_desired_state_on_this_box(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr("socket.gethostname", lambda: "san-b")
    desired = tmp_path / "desired.toml"
    assert real_env(NO_COMMANDS, desired_path=str(desired)).boxes is None  # none yet
    desired.write_text(EXAMPLE.read_text())
    boxes = real_env(NO_COMMANDS, desired_path=str(desired)).both_boxes()
    assert (boxes.names, boxes.here) == (["san-a", "san-b"], "san-b")


def test_a_config_given_names_the_boxes_and_must_name_this_one(
        monkeypatch: pytest.MonkeyPatch) -> None:
    config = load_data(tomllib.loads(EXAMPLE.read_text()))
    monkeypatch.setattr("socket.gethostname", lambda: "san-a")
    assert real_env(NO_COMMANDS, config).both_boxes().names == [
        "san-a", "san-b"]
    monkeypatch.setattr("socket.gethostname", lambda: "elsewhere")
    with pytest.raises(IscsihaError) as exc:
        real_env(NO_COMMANDS, config)
    assert [(r.code, r.value) for r in exc.value.reports] == [
        ("not-a-cluster-node", "elsewhere")]


def test_apply_off_a_cluster_box_is_refused_before_anything_is_asked() -> None:
    config = load_data(tomllib.loads(EXAMPLE.read_text()))
    env = fake_env(Untouchable("pacemaker"), None)
    with pytest.raises(IscsihaError) as exc:
        apply_cmd.apply(env, config, EXAMPLE.read_text(), frozenset(), print)
    assert [r.code for r in exc.value.reports] == ["not-a-cluster-box"]


def test_status_without_sessions_asks_no_box() -> None:
    class Drbd:
        def proc(self) -> dict[int, ProcDevice]:
            return parse_proc_drbd(RESYNC)

    class Lvs:  # this box's thin pools are read here, asking no box
        def run(self, argv: list[str], **_: object) -> CommandResult:
            assert argv[0] == "/usr/sbin/lvs"
            return CommandResult(tuple(argv), 0, '{"report": [{"lv": []}]}', "", 0.0)

    class NoCalls(Untouchable):
        here = "san-a"  # its name only, to label its pools

    env = fake_env(FakePacemaker(mon()), cast(Boxes, NoCalls("boxes")), drbd=Drbd(),
                   runner=Lvs())
    state = live_status(env, sessions=False)
    assert state.targets[0].sessions is None and state.volumes[0].drbd is not None
