"""Apply asks before initiators lose something: nothing changes when refused, all of it
when approved, and a harmless change never asks (fake boxes and CIB, apply_fakes)."""

from __future__ import annotations

import dataclasses
import io
import json
import tomllib
from pathlib import Path

import pytest

from iscsiha.cli import main as cli_main
from iscsiha.cli.confirm import NOT_CONFIRMED, approve_losses
from iscsiha.commands import apply as apply_cmd
from iscsiha.commands.apply_losses import Loss
from iscsiha.commands.node_steps import SECRETS_DIR
from iscsiha.errors import IscsihaError
from iscsiha.model.load import load_data
from iscsiha.model.toml_dump import dumps
from tests.unit.apply_fakes import KEY, World, desired
from tests.unit.test_apply_phases import VM, VM_DB, exported, running


@pytest.fixture
def world(tmp_path: Path) -> World:
    return World(tmp_path)


class Recorder:
    """An approve callback that records what it was shown and refuses or goes on."""

    def __init__(self, go_on: bool) -> None:
        self.go_on = go_on
        self.asked: list[tuple[Loss, ...]] = []

    def __call__(self, losses: tuple[Loss, ...]) -> None:
        self.asked.append(losses)
        if not self.go_on:
            raise IscsihaError.single(NOT_CONFIRMED, "apply", None, "yes", "refused")


def apply(world: World, text: str, approve: Recorder) -> apply_cmd.Changes:
    return apply_cmd.apply(world.env, load_data(tomllib.loads(text)), text, frozenset(),
                           lambda _m: None, approve)


def with_target(text: str, **changes: object) -> str:
    data = tomllib.loads(text)
    data["targets"][0].update(changes)
    return dumps(data)


def test_a_removed_lun_refused_at_the_question_changes_nothing(world: World) -> None:
    running(world, VM_DB)
    cib, lvs = world.pacemaker.cib, [dict(n.lvs) for n in world.nodes]
    refuse = Recorder(go_on=False)
    with pytest.raises(IscsihaError) as caught:
        apply(world, desired({"vmstore": "1G", "db": "1G"}, {"vm": ["vmstore"]}), refuse)
    assert caught.value.reports[0].code == NOT_CONFIRMED
    assert [str(loss) for loss in refuse.asked[0]] == [
        "target vm: LUN 1 (db) REMOVED: its initiators lose it"]
    assert world.pacemaker.cib == cib and [n.lvs for n in world.nodes] == lvs
    assert all(n.file("desired.toml") == VM_DB for n in world.nodes)


def test_a_removed_lun_approved_is_applied(world: World) -> None:
    running(world, VM_DB)
    approve = Recorder(go_on=True)
    apply(world, desired({"vmstore": "1G", "db": "1G"}, {"vm": ["vmstore"]}), approve)
    assert len(approve.asked) == 1
    assert exported(world.pacemaker.cib, "vm") == ["vmstore"]


def test_a_removed_target_is_a_loss(world: World) -> None:
    both = desired({"vmstore": "1G", "backup": "1G"}, {"vm": ["vmstore"], "backup": ["backup"]})
    running(world, both)
    refuse = Recorder(go_on=False)
    with pytest.raises(IscsihaError):
        apply(world, desired({"vmstore": "1G", "backup": "1G"}, {"vm": ["vmstore"]}), refuse)
    assert [loss.target for loss in refuse.asked[0]] == ["backup"]
    assert "REMOVED" in refuse.asked[0][0].text


def test_harmless_changes_do_not_ask(world: World) -> None:
    running(world, VM)
    never = Recorder(go_on=False)
    apply(world, VM_DB, never)  # a LUN and a volume added
    grown = with_target(VM_DB, initiators=[*tomllib.loads(VM_DB)["targets"][0]["initiators"],
                                           "iqn.1998-01.com.vmware:esx9"])
    apply(world, grown, never)  # an initiator allowed
    apply(world, grown, never)  # nothing at all
    assert never.asked == []
    assert exported(world.pacemaker.cib, "vm") == ["vmstore", "db"]


@pytest.mark.parametrize(("what", "change", "expected"), [
    ("acl", lambda t: {"initiators": t["initiators"][1:]}, "allowed initiator"),
    ("portal", lambda t: {"portals": ["10.30.0.199"]}, "portal 10.30.0.100:3260 REMOVED"),
    ("auth", lambda t: {"auth": {"mode": "none"}}, "auth "),
    ("iqn", lambda t: {"iqn": "iqn.2026-11.com.example:san.other"}, "iqn "),
])
def test_acl_portal_auth_and_name_changes_ask(world: World, what: str, change: object,
                                              expected: str) -> None:
    running(world, VM)
    target = tomllib.loads(VM)["targets"][0]
    refuse = Recorder(go_on=False)
    assert callable(change)
    with pytest.raises(IscsihaError):
        apply(world, with_target(VM, **change(target)), refuse)
    assert any(expected in str(loss) for loss in refuse.asked[0]), (what, refuse.asked)


class StoreFiles:
    """This box's files: the cluster key and a secret store as the last apply left it."""

    def __init__(self, store: dict[str, bytes]) -> None:
        self.store = store

    def read(self, path: str, /) -> bytes | None:
        return self.store.get(path, KEY if path.endswith("authkey") else None)


def test_a_changed_chap_secret_asks_though_the_cib_only_holds_a_reference(
        world: World) -> None:
    running(world, VM)
    old = tomllib.loads(VM)["targets"][0]["auth"]["secret"]
    world.env = dataclasses.replace(world.env, files=StoreFiles(
        {f"{SECRETS_DIR}/target-vm-lio/chap_secret": old.encode()}))
    never = Recorder(go_on=False)
    apply(world, VM, never)  # the same secret: nothing to ask
    refuse = Recorder(go_on=False)
    new_auth = {**tomllib.loads(VM)["targets"][0]["auth"], "secret": "a-New-Secret-9"}
    with pytest.raises(IscsihaError):
        apply(world, with_target(VM, auth=new_auth), refuse)
    assert [str(loss) for loss in refuse.asked[0]] == [
        "target vm: CHAP secret changes: initiators with the old one cannot log in again"]
    assert never.asked == []


LOSSES = (Loss("vm", "portal 10.30.0.100:3260 REMOVED"),)


def test_without_a_terminal_the_cli_refuses_and_lists_the_losses() -> None:
    err = io.StringIO()
    with pytest.raises(IscsihaError) as caught:
        approve_losses(LOSSES, is_tty=lambda: False, ask=_no_question, err=err)
    assert caught.value.reports[0].code == NOT_CONFIRMED
    assert "--yes" in caught.value.reports[0].allowed
    assert "target vm: portal 10.30.0.100:3260 REMOVED" in err.getvalue()


@pytest.mark.parametrize(("answer", "goes_on"), [
    ("yes", True), ("vm", True), ("y", False), ("", False), ("backup", False)])
def test_on_a_terminal_yes_or_the_target_name_goes_on(answer: str, goes_on: bool) -> None:
    def ask(_prompt: str) -> str:
        return answer

    if goes_on:
        approve_losses(LOSSES, is_tty=lambda: True, ask=ask, err=io.StringIO())
    else:
        with pytest.raises(IscsihaError):
            approve_losses(LOSSES, is_tty=lambda: True, ask=ask, err=io.StringIO())


def test_with_two_targets_losing_only_yes_goes_on() -> None:
    two = (*LOSSES, Loss("backup", "REMOVED"))
    with pytest.raises(IscsihaError):
        approve_losses(two, is_tty=lambda: True, ask=lambda _p: "vm", err=io.StringIO())


def _no_question(prompt: str) -> str:
    raise AssertionError(f"asked {prompt!r} without a terminal")


@pytest.mark.parametrize(("extra", "code"), [([], 2), (["--yes"], 0)])
def test_cli_apply_without_a_terminal_exits_2_unless_yes_and_the_audit_log_says_so(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch, audit_here: Path,
        extra: list[str], code: int) -> None:
    def fake_apply(env: object, config: object, text: str, deletes: frozenset[str],
                   progress: object, approve: apply_cmd.Approve | None) -> apply_cmd.Changes:
        if approve is not None:  # what apply does once its checks found a loss
            approve(LOSSES)
        return apply_cmd.Changes((), (), (), True)

    monkeypatch.setattr(cli_main.apply_cmd, "apply", fake_apply)
    monkeypatch.setattr(cli_main, "real_env", lambda **_kw: None)
    monkeypatch.setattr("sys.stdin", io.StringIO())  # no terminal
    copy = tmp_path / "c.toml"
    copy.write_text(VM)
    copy.chmod(0o600)
    assert cli_main.main(["apply", str(copy), *extra]) == code
    records = [json.loads(x) for x in (audit_here / "audit.jsonl").read_text().splitlines()]
    assert [r["result"] for r in records] == ["refused" if code else "ok"]
