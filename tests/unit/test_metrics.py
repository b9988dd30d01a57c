"""`iscsiha metrics`: the status as Prometheus text, as node-exporter's textfile
collector reads it."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from iscsiha import metrics
from iscsiha.cli import main as cli
from iscsiha.commands import targets as targets_cmd
from iscsiha.commands.targets import ClusterStatus, Fencing, TargetStatus, VolumeStatus
from iscsiha.errors import IscsihaError
from iscsiha.executors.drbd import ProcDevice

# One metric line of the text format: a name, optional labels, a number.
SAMPLE = re.compile(r'[a-z_]+(\{([a-z_]+="([^"\\]|\\.)*",?)*\})? -?[0-9.e+]+')

STATE = ClusterStatus(
    nodes=(("san-a", True), ("san-b", False)),
    targets=(TargetStatus("vm", "iqn.2026-11.com.example:vm", ("san-a",), "san-a", "manual",
                          True, ("iqn.1993-08.org.debian:01:hv1",)),),
    volumes=(VolumeStatus("db", (("san-a", "Promoted"),), ProcDevice(
        "SyncSource", "Primary", "Secondary", "UpToDate", "Inconsistent", 34816, 25.0)),),
    quorate=True,
    fencing=Fencing(True, (("fence-san-a", None), ("fence-san-b", "san-a"))),
)


def values(text: str) -> dict[str, float]:
    return {line.rsplit(" ", 1)[0]: float(line.rsplit(" ", 1)[1])
            for line in text.splitlines() if not line.startswith("#")}


def test_every_line_is_in_the_text_format_and_each_metric_is_declared_once() -> None:
    text = metrics.render(STATE)
    samples = [line for line in text.splitlines() if not line.startswith("#")]
    assert samples and all(SAMPLE.fullmatch(line) for line in samples), samples
    declared = re.findall(r"^# TYPE (\S+) gauge$", text, re.MULTILINE)
    assert len(declared) == len(set(declared))
    assert {line.split("{")[0].split(" ")[0] for line in samples} <= set(declared)


def test_the_numbers_say_what_status_says() -> None:
    got = values(metrics.render(STATE))
    assert got["iscsiha_up"] == 1
    assert got["iscsiha_health"] == 1  # degraded: san-b offline, fencing, resync
    assert got['iscsiha_node_online{node="san-b"}'] == 0
    assert got["iscsiha_fencing_ready"] == 0
    assert got['iscsiha_fence_device_running{device="fence-san-a",node=""}'] == 0
    assert got['iscsiha_target_running{target="vm",node="san-a"}'] == 1
    assert got['iscsiha_target_sessions{target="vm"}'] == 1
    assert got['iscsiha_volume_primary{volume="db",node="san-a"}'] == 1
    assert got['iscsiha_volume_connected{volume="db"}'] == 0
    assert got['iscsiha_volume_up_to_date{volume="db",side="peer"}'] == 0
    assert got['iscsiha_volume_out_of_sync_bytes{volume="db"}'] == 34816 * 1024
    assert got['iscsiha_volume_resync_ratio{volume="db"}'] == 0.25


def test_label_values_are_escaped() -> None:
    out: list[str] = []
    metrics.metric(out, "x", "help", [({"name": 'a"b\\c\nd'}, 1)])
    assert out[1] == 'iscsiha_x{name="a\\"b\\\\c\\nd"} 1\n'


def test_a_cluster_that_cannot_be_asked_is_up_0_in_an_atomically_written_file(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    def unreachable(env: object, sessions: bool) -> None:
        raise IscsihaError.single("step-failed", "command", "crm_mon", "an answer", "no")

    monkeypatch.setattr(cli, "real_env", lambda: "env")
    monkeypatch.setattr(targets_cmd, "live_status", unreachable)
    out = tmp_path / "iscsiha.prom"
    assert cli.main(["metrics", "--textfile", str(out)]) == 0
    assert values(out.read_text()) == {"iscsiha_up": 0}
    assert not [p for p in tmp_path.iterdir() if p != out]  # no temporary file left
