"""Thin pools' fill: lvs' report read defensively (executors/lvm.py), pool-filling and
pool-ok told once per crossing by the space timer, the pools in the alert settings."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from iscsiha.alerts import agent, space
from iscsiha.alerts import config as alert_settings
from iscsiha.alerts.run import World
from iscsiha.errors import IscsihaError
from iscsiha.executors.lvm import Lvm, LvRow, lv_rows
from iscsiha.executors.runner import CommandResult, Runner
from iscsiha.model.load import load_text
from tests.conftest import EXAMPLE

POOL_TOML = '\n[[pools]]\nname = "thin"\nsize = "200G"\nfill_alert_percent = 70\n'


def report(*rows: dict[str, str]) -> str:
    return json.dumps({"report": [{"lv": list(rows)}]})


def pool_row(data: str = "10.00", meta: str = "2.50", **over: str) -> dict[str, str]:
    return {"lv_name": "thin", "vg_name": "data", "lv_size": str(200 << 30),
            "segtype": "thin-pool", "pool_lv": "", "data_percent": data,
            "metadata_percent": meta, **over}


DB = {"lv_name": "db", "vg_name": "data", "lv_size": str(20 << 30), "segtype": "thin",
      "pool_lv": "thin", "data_percent": "40.00", "metadata_percent": ""}


class Lvs(Runner):
    """vgs: data 10 % full; lvs: the report held in ``out``."""

    def __init__(self) -> None:
        self.out = report(pool_row(), DB)
        self.calls: list[list[str]] = []

    def run(self, argv: Any, **kwargs: Any) -> CommandResult:
        self.calls.append(list(argv))
        out = "  1000 900\n" if argv[0].endswith("vgs") else self.out
        return CommandResult(tuple(argv), 0, out, "", 0.0)


def test_the_report_splits_pools_from_volumes() -> None:
    runner = Lvs()
    lvm = Lvm(runner)
    assert lvm.tagged() == {"db": "data"}
    assert lvm.pools() == [LvRow("thin", "data", 200 << 30, "thin-pool", "", 10.0, 2.5)]
    assert runner.calls[0][-1] == "@iscsiha" and "json" in runner.calls[0]


@pytest.mark.parametrize("out", [
    "", "not json", "[]", '{"report": {}}', '{"report": [{"lv": {}}]}',
    '{"report": [{"lv": [1]}]}', '{"report": [{}, {}]}',
    report({**pool_row(), "lv_size": "-1"}),
    report({**pool_row(), "lv_size": "1e3"}),
    report(pool_row(data="101.00")),
    report(pool_row(data="nan")),
    report(pool_row(meta="12,5")),
    report({**pool_row(), "lv_name": "-rf"}),
    report({**pool_row(), "vg_name": "a\nb"}),
    report({**pool_row(), "segtype": "thin pool; rm"}),
    report({**pool_row(), "pool_lv": "--x"}),
    report({k: v for k, v in pool_row().items() if k != "segtype"}),
    report({**pool_row(), "data_percent": 10}),  # type: ignore[dict-item]
    "[" * 100000,
])
def test_garbage_from_lvs_is_reported_never_a_traceback(out: str) -> None:
    assert lv_rows(out) is None
    runner = Lvs()
    runner.out = out
    with pytest.raises(IscsihaError) as exc:
        Lvm(runner).pools()
    assert exc.value.reports[0].code == "lvm-output-unexpected"


def test_no_lv_of_the_cluster_is_an_empty_report() -> None:
    assert lv_rows('{"report": [{"lv": []}]}') == []
    assert lv_rows('{"report": []}') == []


def world(tmp_path: Path, runner: Lvs, journaled: list[tuple[str, dict[str, str]]]) -> World:
    config = load_text(EXAMPLE.read_text() + POOL_TOML)
    settings = tmp_path / "alerts.json"
    settings.write_text(alert_settings.file_text(config))
    return World(runner, hostname=lambda: "san-a", settings_path=str(settings),
                 space_state_path=str(tmp_path / "space.json"),
                 pool_state_path=str(tmp_path / "pools.json"),
                 read_bytes=lambda p: Path(p).read_bytes() if Path(p).exists() else None,
                 journal=lambda e: journaled.append((e.kind, dict(e.details))),
                 senders={})


def test_a_pool_filling_is_told_once_and_back_under_once(tmp_path: Path) -> None:
    runner, journaled = Lvs(), []
    w = world(tmp_path, runner, journaled)
    assert agent.main(["check-space"], {}, w) == 0
    assert journaled == []  # 10 % of a pool whose threshold is 70
    runner.out = report(pool_row(data="40.00", meta="71.20"), DB)  # metadata counts too
    for _ in range(2):
        assert agent.main(["check-space"], {}, w) == 0
    assert journaled == [("pool-filling", {
        "vg": "data", "pool": "thin", "percent": "71", "threshold": "70",
        "data_percent": "40.0", "metadata_percent": "71.2"})]
    runner.out = report(pool_row(data="69.99", meta="3.00"), DB)
    for _ in range(2):
        assert agent.main(["check-space"], {}, w) == 0
    assert [kind for kind, _ in journaled] == ["pool-filling", "pool-ok"]


def test_a_pool_missing_or_lvs_garbage_fails_the_run_but_keeps_the_state(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    runner, journaled = Lvs(), []
    w = world(tmp_path, runner, journaled)
    runner.out = report(pool_row(data="90.00"))
    assert agent.main(["check-space"], {}, w) == 0
    runner.out = "garbage"
    assert agent.main(["check-space"], {}, w) == 1
    runner.out = report()
    assert agent.main(["check-space"], {}, w) == 1
    assert "thin pool data/thin is not on this box" in capsys.readouterr().err
    runner.out = report(pool_row(data="90.00"))
    assert agent.main(["check-space"], {}, w) == 0
    assert [kind for kind, _ in journaled] == ["pool-filling"]  # not told again


def test_the_settings_carry_each_pools_threshold(tmp_path: Path) -> None:
    config = load_text(EXAMPLE.read_text() + POOL_TOML)
    data = json.loads(alert_settings.file_text(config))
    assert data["pools"] == [["data", "thin", 70]]
    path = tmp_path / "alerts.json"

    def read(pools: object) -> alert_settings.AlertSettings:
        path.write_text(json.dumps({**data, "pools": pools}))
        return alert_settings.read(str(path), lambda p: Path(p).read_bytes())

    assert read([["data", "thin", 70]]).pools == (("data", "thin", 70),)
    for bad in ([["data", "thin", 100]], [["data", "-x", 70]], [["data", "thin", True]],
                [["data", "thin"]], "thin", [["../x", "thin", 70]]):
        with pytest.raises(IscsihaError) as exc:
            read(bad)
        assert exc.value.reports[0].code == "bad-alerts-file"
    del data["pools"]  # as an apply before pools wrote it
    path.write_text(json.dumps(data))
    assert alert_settings.read(str(path), lambda p: Path(p).read_bytes()).pools == ()


def test_the_pool_state_file_keeps_only_pool_keys() -> None:
    raw = json.dumps({"data/thin": True, "data": True, "../x/y": True, "data/t": 1}).encode()
    assert space.read_state("p", lambda _: raw, space.pool_key_ok) == {"data/thin": True}
