"""Replacing a dead box: the token from the box that stays, the join of a new box with
empty disks, and its rebuild (volumes made anew, DRBD left to copy them in full)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from iscsiha.commands import bootstrap, bootstrap_env, join_token, replace
from iscsiha.errors import IscsihaError
from iscsiha.executors.drbd import ProcDevice
from iscsiha.model.load import load_text
from iscsiha.plan import peer_ssh
from iscsiha.plan.cib_merge import merge
from iscsiha.plan.drbd import AUTHKEY_PATH
from iscsiha.plan.plan import make_plan
from iscsiha.protocol import messages as m
from tests.conftest import EXAMPLE
from tests.unit import ssh_keys
from tests.unit.bootstrap_fakes import Box, FakeTiebreaker, Server, empty_cib, free_port, request
from tests.unit.env_fakes import FakeClock, fake_env

NEW_KEY = ssh_keys.ed25519("host of the new box")


@pytest.fixture
def pair(tmp_path: Path) -> tuple[Box, Box, int]:
    """san-a and san-b, joined."""
    port = free_port()
    a, b = Box(tmp_path / "a", "san-a", 1, port), Box(tmp_path / "b", "san-b", 2, port)
    token = bootstrap.init(a.env, request(), FakeTiebreaker(), a.progress.append).token
    b.cib.online = {"san-a", "san-b"}
    with Server(a) as server:
        bootstrap.join(b.env, token, b.progress.append)
    assert server.wait() is True
    return a, b, port


def new_box(tmp_path: Path, name: str, number: int, port: int) -> Box:
    """A box as flashed, with the dead one's name and addresses and its own host key."""
    box = Box(tmp_path / f"new-{name}", name, number, port)
    (box.root / "etc/ssh/ssh_host_ed25519_key.pub").write_text(f"{NEW_KEY} root@{name}\n")
    box.cib.online = {"san-a", "san-b"}
    return box


def refused_codes(call: Any, *args: Any) -> list[tuple[str, object]]:
    with pytest.raises(IscsihaError) as caught:
        call(*args)
    return [(r.code, r.value) for r in caught.value.reports]


@pytest.mark.parametrize(("survivor", "dead", "number"), [("a", "san-b", 2), ("b", "san-a", 1)])
def test_either_box_replaces_the_other_and_the_new_box_rebuilds_instead_of_applying(
        tmp_path: Path, pair: tuple[Box, Box, int], survivor: str, dead: str,
        number: int) -> None:
    a, b, port = pair
    stays = a if survivor == "a" else b
    stays.cib.online = {stays.name}
    result = replace.replace(stays.env, dead, stays.progress.append)
    assert (result.node, result.peer) == (stays.name, dead)
    assert stays.cib.standby_calls == [(dead, True)]
    # The token points at the box that stays, on its first cluster link.
    assert str(join_token.decode(result.token).address) == ("127.0.0.11" if survivor == "a"
                                                            else "127.0.0.12")
    fresh = new_box(tmp_path, dead, number, port)
    with Server(stays) as server:
        config = bootstrap.join(fresh.env, result.token, fresh.progress.append)
    assert server.wait() is True
    assert [c.cluster.name for c in fresh.rebuilt] == [config.cluster.name]
    assert fresh.applied == []
    # The box that stays now trusts the new box's host key, not the dead one's.
    known = stays.file(peer_ssh.KNOWN_HOSTS).decode()
    assert NEW_KEY in known and ssh_keys.HOST[dead] not in known
    assert fresh.file(AUTHKEY_PATH) == stays.file(AUTHKEY_PATH)


def test_replace_refuses_this_box_an_unknown_one_and_a_box_still_online(
        pair: tuple[Box, Box, int]) -> None:
    a, _, _ = pair
    a.cib.online = {"san-a"}
    assert refused_codes(replace.replace, a.env, "san-a", a.progress.append) == [
        ("not-the-peer", "san-a")]
    assert refused_codes(replace.replace, a.env, "san-c", a.progress.append) == [
        ("not-the-peer", "san-c")]
    a.cib.online = {"san-a", "san-b"}
    assert refused_codes(replace.replace, a.env, "san-b", a.progress.append) == [
        ("box-online", "san-b")]
    a.cib.online = set()
    assert refused_codes(replace.replace, a.env, "san-b", a.progress.append) == [
        ("not-online", "san-a")]
    assert a.cib.standby_calls == []
    assert not (a.root / bootstrap_env.JOIN_STATE.lstrip("/")).exists()


def test_a_listener_that_cannot_start_leaves_the_dead_box_as_it_was(
        pair: tuple[Box, Box, int]) -> None:
    a, _, _ = pair
    a.cib.online = {"san-a"}

    def cannot_listen(env: object) -> None:
        raise IscsihaError.single("unit-state", "unit", "iscsiha-join.service",
                                  "reaching active", "is failed")

    a.env.start_listener = cannot_listen
    assert refused_codes(replace.replace, a.env, "san-b", a.progress.append) == [
        ("unit-state", "iscsiha-join.service")]
    assert a.cib.standby_calls == [("san-b", True), ("san-b", False)]
    assert not (a.root / bootstrap_env.JOIN_STATE.lstrip("/")).exists()


def test_a_box_of_another_name_cannot_take_the_dead_one_s_place(
        tmp_path: Path, pair: tuple[Box, Box, int]) -> None:
    a, _, port = pair
    a.cib.online = {"san-a"}
    token = replace.replace(a.env, "san-b", a.progress.append).token
    wrong = new_box(tmp_path, "san-c", 2, port)
    with Server(a, ttl=5.0) as server, pytest.raises(IscsihaError) as caught:
        bootstrap.join(wrong.env, token, wrong.progress.append)
    assert server.wait() is False
    assert caught.value.reports[0].code == "wrong-host-name"
    assert wrong.rebuilt == [] and NEW_KEY not in a.file(peer_ssh.KNOWN_HOSTS).decode()


# -- the rebuild on the new box ---------------------------------------------------------

CONFIG = load_text(EXAMPLE.read_text())
KEY = b"k" * 256


class Steps:
    """Both boxes' node steps as the rebuild calls them; this box has no LV yet."""

    here = "san-b"

    def __init__(self, lvs: dict[str, int | None] | None = None, free: int = 1 << 40) -> None:
        self.names = ["san-a", "san-b"]
        self.lvs = lvs or {}
        self.free = free
        self.calls: list[tuple[str, str, Any]] = []

    def call(self, node: str, step: m.Step[Any, Any], request: Any,
             timeout: float = 300.0) -> Any:
        self.calls.append((node, step.name, request))
        if step is m.FACTS:
            return m.Facts(vgs={vg: (self.free, 4 << 20) for vg in request.vgs},
                           lvs={name: self.lvs.get(name) for name, _ in request.volumes},
                           tagged={}, drbd={})
        if step is m.DRBD_METADATA:
            return m.Refs(request.volumes)
        return step.reply() if step.reply is m.Nothing else step.reply(())

    def on_both(self, step: m.Step[Any, Any], request: Any) -> dict[str, Any]:
        raise AssertionError("the rebuild touches only the new box")


class Cluster:
    def __init__(self) -> None:
        self.cib = merge(empty_cib(3), make_plan(CONFIG).cib)
        self.calls: list[str] = []

    def query(self) -> str:
        return self.cib

    def standby(self, node: str, on: bool) -> None:
        self.calls.append(f"standby {node} {'on' if on else 'off'}")

    def cleanup_node(self, node: str) -> None:
        self.calls.append(f"cleanup {node}")


class Keys:
    def read(self, path: str) -> bytes | None:
        return KEY if path == AUTHKEY_PATH else None


def rebuild(steps: Steps) -> tuple[replace.Rebuilt, Cluster]:
    cluster = Cluster()
    env = fake_env(cluster, steps, files=Keys())  # type: ignore[arg-type]
    return replace.rebuild(env, CONFIG, EXAMPLE.read_text(), lambda _: None), cluster


def test_the_rebuild_makes_every_volume_here_gives_fresh_metadata_and_leaves_standby() -> None:
    steps = Steps()
    done, cluster = rebuild(steps)
    order = [name for _, name, _ in steps.calls]
    assert order == ["facts", *(["create-pools"] if CONFIG.pools else []), "create-volumes",
                     "write-secrets", "write-drbd-files", "drbd-metadata", "write-desired"]
    assert {node for node, _, _ in steps.calls} == {"san-b"}
    assert "sync-new" not in order  # fresh metadata is copied in full, never declared in sync
    created = next(req for _, name, req in steps.calls if name == "create-volumes")
    assert sorted(name for name, _, _ in created.volumes) == sorted(v.name for v in CONFIG.volumes)
    files = next(req for _, name, req in steps.calls if name == "write-drbd-files")
    assert sorted(files.resources) == sorted(t.name for t in CONFIG.targets)
    assert set(done.metadata) >= {f"{t.name}/0" for t in CONFIG.targets if t.luns}
    plan = make_plan(CONFIG)
    assert done.minors == tuple(sorted(
        s.minor for res in plan.drbd.values()
        for s in [*res.volumes.values(), *filter(None, [res.reservations_slot])]))
    # The probes that ran before the secrets were here are forgotten, then standby ends.
    assert cluster.calls == ["cleanup san-b", "standby san-b off"]


def test_a_second_rebuild_makes_only_what_is_missing() -> None:
    first = CONFIG.volumes[0]
    steps = Steps(lvs={v.name: v.size for v in CONFIG.volumes if v is not first})
    done, _ = rebuild(steps)
    created = next(req for _, name, req in steps.calls if name == "create-volumes")
    assert [name for name, _, _ in created.volumes] == [first.name]
    assert first.name in done.created


def test_no_room_for_the_volumes_is_refused_before_anything_is_made() -> None:
    steps = Steps(free=1 << 20)
    with pytest.raises(IscsihaError) as caught:
        rebuild(steps)
    assert {r.code for r in caught.value.reports} == {"no-space"}
    assert [name for _, name, _ in steps.calls] == ["facts"]


def _dev(connection: str, disk: str, peer: str, percent: float | None = None) -> ProcDevice:
    return ProcDevice(connection, "Secondary", "Primary", disk, peer, 0, percent)


def test_resync_progress_counts_volumes_in_sync_and_the_kernel_s_percent() -> None:
    state = replace.resync_state({
        1: _dev("Connected", "UpToDate", "UpToDate"),
        2: _dev("SyncTarget", "Inconsistent", "UpToDate", 40.0),
        3: _dev("WFConnection", "Inconsistent", "DUnknown")}, (1, 2, 3, 4))
    assert (state.minors, state.done, state.percent) == (4, 1, 35.0)
    assert replace.resync_state({}, ()).percent == 100.0


def test_waiting_for_the_resync_says_each_change_and_ends_when_all_are_in_sync() -> None:
    plan = make_plan(CONFIG)
    minors = sorted(s.minor for res in plan.drbd.values()
                    for s in [*res.volumes.values(), *filter(None, [res.reservations_slot])])
    rounds = [{n: _dev("SyncTarget", "Inconsistent", "UpToDate", 50.0) for n in minors},
              {n: _dev("Connected", "UpToDate", "UpToDate") for n in minors}]

    class Drbd:
        def proc(self) -> dict[int, ProcDevice]:
            return rounds.pop(0) if len(rounds) > 1 else rounds[0]

    lines: list[str] = []
    env = fake_env(drbd=Drbd(), clock=FakeClock())
    state = replace.wait_resynced(env, tuple(minors), 3600.0, lines.append)
    assert state.done == len(minors)
    assert lines == [f"resync: 0 of {len(minors)} volumes in sync, 50.0% (it goes on by "
                     "itself; `iscsiha status` shows it)",
                     f"resync: {len(minors)} of {len(minors)} volumes in sync, 100.0%"]
