"""Thin pools in `iscsiha status` (text and JSON), in the metrics, and the peer's answer
checked field by field."""

from __future__ import annotations

import json
from dataclasses import replace
from typing import Any, cast

import pytest

from iscsiha import metrics
from iscsiha.commands.cluster_env import Boxes
from iscsiha.commands.node_steps import Box, serve
from iscsiha.commands.targets import PoolStatus, live_status
from iscsiha.errors import IscsihaError
from iscsiha.executors.runner import CommandResult
from iscsiha.protocol import codec
from iscsiha.protocol import messages as m
from iscsiha.status_report import as_json
from iscsiha.views import status_lines
from tests.unit.env_fakes import fake_env
from tests.unit.test_status import FakePacemaker, mon

HERE = {"lv_name": "thin", "vg_name": "data", "lv_size": str(400 << 30),
        "segtype": "thin-pool", "pool_lv": "", "data_percent": "12.50",
        "metadata_percent": "3.25"}


class Lvs:
    def __init__(self, out: str) -> None:
        self.out = out

    def run(self, argv: list[str], **_: object) -> CommandResult:
        return CommandResult(tuple(argv), 0, self.out, "", 0.0)


class Peer:
    """san-b answers pool-usage with ``pools``, or fails when it is None."""

    here, names = "san-a", ["san-a", "san-b"]

    def __init__(self, pools: tuple[m.PoolFacts, ...] | None) -> None:
        self.pools = pools
        self.asked: list[tuple[str, str]] = []

    def call(self, node: str, step: m.Step[Any, Any], request: Any,
             timeout: float = 300.0) -> Any:
        self.asked.append((node, step.name))
        if step is m.TARGET_SESSIONS:
            return m.Sessions({})
        if self.pools is None:
            raise IscsihaError.single("step-failed", "node", node, "pool-usage succeeding")
        return m.Pools(self.pools)


def state_with(peer: Peer, sessions: bool = True, out: str | None = None) -> Any:
    env = fake_env(FakePacemaker(mon()), cast(Boxes, peer), drbd=_NoDrbd(),
                   runner=Lvs(out or json.dumps({"report": [{"lv": [HERE]}]})))
    return live_status(env, sessions=sessions)


class _NoDrbd:
    def proc(self) -> dict[int, Any]:
        return {}


def test_each_box_s_pools_are_in_the_status() -> None:
    peer = Peer((m.PoolFacts("thin", "data", 400 << 30, 13.0, 3.5),))
    state = state_with(peer)
    assert state.pools == (PoolStatus("thin", "data", "san-a", 400 << 30, 12.5, 3.25),
                           PoolStatus("thin", "data", "san-b", 400 << 30, 13.0, 3.5))
    assert ("san-a", "pool-usage") not in peer.asked  # read here, not over SSH
    lines = [line for line in status_lines(state) if line.startswith("pool")]
    assert lines == [
        "pool    thin                     on san-a      data, 400G: data 12.5%, metadata 3.2%",
        "pool    thin                     on san-b      data, 400G: data 13.0%, metadata 3.5%"]
    pools = as_json(state)["pools"]
    assert pools[1] == {"name": "thin", "volume_group": "data", "node": "san-b",
                        "size_bytes": 400 << 30, "data_percent": 13.0,
                        "metadata_percent": 3.5}


def test_without_sessions_only_this_box_is_read_and_a_silent_peer_is_left_out() -> None:
    peer = Peer(None)
    assert [p.node for p in state_with(peer, sessions=False).pools] == ["san-a"]
    assert all(step != "pool-usage" for _, step in peer.asked)
    assert [p.node for p in state_with(peer).pools] == ["san-a"]  # san-b failed
    assert state_with(peer, out="garbage").pools == ()  # lvs garbage: no pool, no traceback


def test_the_metrics_carry_each_pool_per_box() -> None:
    state = state_with(Peer((m.PoolFacts("thin", "data", 1 << 30, None, None),)))
    text = metrics.render(state)
    assert ('iscsiha_pool_data_percent{pool="thin",volume_group="data",node="san-a"} 12.5'
            in text)
    assert ('iscsiha_pool_metadata_percent{pool="thin",volume_group="data",node="san-a"} '
            "3.25" in text)
    assert 'iscsiha_pool_size_bytes{pool="thin",volume_group="data",node="san-b"} 1073741824' \
        in text
    assert 'iscsiha_pool_data_percent{pool="thin",volume_group="data",node="san-b"}' \
        not in text  # unknown is left out, not 0
    assert "iscsiha_pool_data_percent{" not in metrics.render(replace(state, pools=()))
    assert "# TYPE iscsiha_pool_data_percent gauge" in text


@pytest.mark.parametrize("pool", [
    {"name": "thin", "volume_group": "data", "size": 1, "data_percent": 101.0,
     "metadata_percent": 1.0},
    {"name": "-x", "volume_group": "data", "size": 1, "data_percent": 1.0,
     "metadata_percent": 1.0},
    {"name": "thin", "volume_group": "data", "size": -1, "data_percent": 1.0,
     "metadata_percent": 1.0},
    {"name": "thin", "volume_group": "data", "size": 1, "data_percent": "1",
     "metadata_percent": 1.0},
    {"name": "thin", "volume_group": "data", "size": 1, "data_percent": 1.0},
    {"name": "thin", "volume_group": "d\x1b[2J", "size": 1, "data_percent": 1.0,
     "metadata_percent": 1.0},
])
def test_a_hostile_pool_usage_reply_is_refused(pool: dict[str, Any]) -> None:
    with pytest.raises(IscsihaError) as exc:
        codec.decode(m.Pools, {"pools": [pool]}, "san-b pool-usage reply")
    assert exc.value.reports[0].code == "peer-message-refused"


def test_the_pool_usage_step_answers_from_lvs() -> None:
    box = Box(cast(Any, Lvs(json.dumps({"report": [{"lv": [HERE]}]}))))
    ok, out = serve(box, "pool-usage", "{}")
    assert ok and codec.decode(m.Pools, json.loads(out)).pools == (
        m.PoolFacts("thin", "data", 400 << 30, 12.5, 3.25),)
    box = Box(cast(Any, Lvs("{]")))
    ok, out = serve(box, "pool-usage", "{}")
    assert not ok and "lvm-output-unexpected" in out


@pytest.mark.parametrize("kind, data", [
    (m.Volumes, {"volumes": [["db", "data", 1 << 30]], "thin": [["db", "--force"]]}),
    (m.Volumes, {"volumes": [["db", "data", 1 << 30]], "thin": [["db"]]}),
    (m.Volumes, {"volumes": [["db", "data", 1 << 30]], "thin": {"db": "thin"}}),
    (m.Facts, {"vgs": {}, "lvs": {}, "tagged": {}, "drbd": {}, "thin": [["db", "a b"]]}),
    (m.Facts, {"vgs": {}, "lvs": {}, "tagged": {}, "drbd": {}, "pools": [{}]}),
])
def test_hostile_thin_fields_from_the_peer_are_refused(kind: type, data: Any) -> None:
    with pytest.raises(IscsihaError) as exc:
        codec.decode(kind, data)
    assert exc.value.reports[0].code == "peer-message-refused"


def test_facts_and_volumes_without_the_thin_fields_still_decode() -> None:
    facts = codec.decode(m.Facts, {"vgs": {}, "lvs": {}, "tagged": {}, "drbd": {}})
    assert facts.pools == () and facts.thin == ()
    assert codec.decode(m.Volumes, {"volumes": []}).thin == ()
