"""Mixed releases on the peer channel (iscsiha.protocol.version): which protocol the
boxes write, what a box refuses, and the messages of every protocol still served,
pinned in tests/golden/protocol/ (UPDATE_GOLDEN=1 rewrites the current one)."""

from __future__ import annotations

import io
import json
import os
from ipaddress import ip_address
from pathlib import Path
from typing import Any

import pytest

from iscsiha import __version__
from iscsiha.cli import main as cli
from iscsiha.commands import node_steps
from iscsiha.errors import IscsihaError
from iscsiha.executors.peers import Boxes
from iscsiha.executors.runner import CommandResult
from iscsiha.model.identity import RESERVATIONS_VOLUME
from iscsiha.protocol import codec
from iscsiha.protocol import messages as m
from iscsiha.protocol.version import CURRENT, OLDEST, Speaks
from tests.conftest import EXAMPLE
from tests.unit.peer_wire import Wire, fake_boxes, hello_reply

GOLDEN = Path(__file__).resolve().parents[1] / "golden/protocol"
DESIRED = EXAMPLE.read_text()
RESERVED = f"alpha/{RESERVATIONS_VOLUME}"


class EmptyBox:
    """A box whose commands all succeed and print nothing."""

    def __init__(self, name: str) -> None:
        self.name = name

    def run(self, argv: list[str], **kwargs: Any) -> CommandResult:
        return CommandResult(tuple(argv), 0, "", "", 0.0)

    def read(self, path: str) -> str:
        return ""


def _wire(boxes: Any) -> Wire:
    return boxes._runner  # type: ignore[no-any-return]


# -- which protocol is written ---------------------------------------------------------

@pytest.mark.parametrize(("here", "peer", "written"), [
    (Speaks(1, 1), Speaks(1, 1), 1),
    (Speaks(1, 2), Speaks(1, 1), 1),  # N+1 calling N writes N
    (Speaks(1, 1), Speaks(1, 2), 1),  # N calling N+1: N+1 still serves N
    (Speaks(1, 2), Speaks(1, 2), 2),
])
def test_releases_one_apart_talk_in_the_older_protocol_both_ways(
        here: Speaks, peer: Speaks, written: int) -> None:
    boxes = fake_boxes(EmptyBox("san-a"), EmptyBox("san-b"), speaks=here,
                       box=lambda name: {"speaks": peer if name == "san-b" else here})
    boxes.call("san-b", m.DOWN, m.Resources(("alpha",)))
    boxes.call("san-b", m.UP, m.Resources(("alpha",)))
    boxes.call("san-a", m.UP, m.Resources(("alpha",)))
    assert _wire(boxes).calls == [("san-b", "hello", None), ("san-b", "down", written),
                                  ("san-b", "up", written), ("san-a", "up", None)]


@pytest.mark.parametrize(("here", "peer"), [(Speaks(2, 3), Speaks(1, 1)),
                                            (Speaks(1, 1), Speaks(2, 3))])
def test_releases_two_apart_are_refused_before_any_step_runs(
        here: Speaks, peer: Speaks) -> None:
    boxes = fake_boxes(EmptyBox("san-a"), EmptyBox("san-b"), speaks=here,
                       box=lambda name: {"speaks": peer if name == "san-b" else here})
    with pytest.raises(IscsihaError) as refused:
        boxes.call("san-b", m.DOWN, m.Resources(("alpha",)))
    (report,) = refused.value.reports
    assert report.code == "peer-protocol"
    assert report.field == f"node san-b (iscsiha {__version__})"
    assert report.value == peer.allowed
    assert _wire(boxes).calls == [("san-b", "hello", None)]


@pytest.mark.parametrize("protocol", [0, 2, 999])
def test_a_box_refuses_a_request_in_a_protocol_it_does_not_serve(protocol: int) -> None:
    box = node_steps.Box(EmptyBox("san-b"), speaks=Speaks(1, 1))  # type: ignore[arg-type]
    ok, out = node_steps.serve(box, "down", json.dumps({"resources": ["alpha"]}), protocol)
    assert not ok
    (report,) = json.loads(out)["reports"]
    assert (report["code"], report["value"], report["allowed"]) == (
        "peer-protocol", str(protocol), "protocol 1")


def test_hello_is_answered_whatever_protocol_the_caller_names() -> None:
    box = node_steps.Box(EmptyBox("san-b"), speaks=Speaks(4, 5))  # type: ignore[arg-type]
    ok, out = node_steps.serve(box, "hello", "{}", 1)
    assert ok
    assert json.loads(out) == {"release": __version__, "oldest": 4, "newest": 5}


@pytest.mark.parametrize("command", [
    "/usr/bin/iscsiha node up --protocol x",
    "/usr/bin/iscsiha node up --protocol 1000",
    "/usr/bin/iscsiha node up --protocol -1",
    "/usr/bin/iscsiha node up --protocl 1",
    "/usr/bin/iscsiha node up --protocol 1 --protocol 1",
    "/usr/bin/iscsiha node up --protocol",
])
def test_a_forced_command_with_a_bad_protocol_is_refused(
        monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str],
        command: str) -> None:
    monkeypatch.setenv("SSH_ORIGINAL_COMMAND", command)
    monkeypatch.setattr("sys.stdin", io.TextIOWrapper(io.BytesIO(b"{}")))
    assert cli.main(["node", "from-peer"]) == cli.EXIT_REFUSED
    code = json.loads(capsys.readouterr().out)["reports"][0]["code"]
    assert code in ("peer-command-refused", "peer-protocol")


def test_a_forced_command_naming_a_served_protocol_runs_the_step(
        monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.setenv("SSH_ORIGINAL_COMMAND", f"/usr/bin/iscsiha node hello --protocol {CURRENT}")
    monkeypatch.setattr("sys.stdin", io.TextIOWrapper(io.BytesIO(b"{}")))
    assert cli.main(["node", "from-peer"]) == cli.EXIT_OK
    assert json.loads(capsys.readouterr().out)["newest"] == CURRENT


# -- the messages of each protocol still served -----------------------------------------

STATE = m.DiskState("Secondary", "Connected", "UpToDate", "UpToDate")
POOL = m.PoolFacts("pool0", "data", 1 << 30, 12.5, 3.0)
GI = m.GenerationIds("0123456789ABCDEF", "0000000000000000",
                     ("FEDCBA9876543210", "0000000000000000"), "0:1:1:1:0:0:0")
DETAIL = m.Detail("Secondary", "Primary", "Connected", "UpToDate", "UpToDate", 0, 100.0,
                  None, GI, ("drbd alpha: Split-Brain detected",))
AUDIT = m.AuditCopy("2026-12-07T10:00:00+00:00", "san-a", "admin", "192.0.2.9", "cli",
                    "iscsiha apply", "ok", "applied", "")

# Each step with a request and a reply as this build writes them.
SAMPLES: dict[str, tuple[Any, Any]] = {
    "hello": (m.Nothing(), m.Hello("0.1.0", 1, 1)),
    "facts": (m.FactsRequest(("data",), (("alpha-0", "data"),), {"alpha": 100}),
              m.Facts({"data": (1 << 30, 4 << 20)}, {"alpha-0": 1 << 28, "beta-0": None},
                      {"alpha-0": "data"}, {"alpha": STATE}, (POOL,),
                      (("vm-0", "pool0"),))),
    "create-volumes": (m.Volumes((("alpha-0", "data", 1 << 28),), (("vm-0", "pool0"),)),
                       m.Nothing()),
    "create-pools": (m.Volumes((("pool0", "data", 1 << 30),)), m.Nothing()),
    "pool-usage": (m.Nothing(), m.Pools((POOL,))),
    "drbd-metadata": (m.Refs(("alpha/0", RESERVED)), m.Refs(("alpha/0",))),
    "up": (m.Resources(("alpha",)), m.Nothing()),
    "sync-new": (m.SyncNew((("alpha/0", 100),), 60.0), m.Refs(("alpha/0",))),
    "down": (m.Resources(("alpha",)), m.Nothing()),
    "drbd-role": (m.Role("primary", ("alpha/0",)), m.Nothing()),
    "remove-resources": (m.Resources(("alpha",)), m.Nothing()),
    "delete-volumes": (m.VolumeGroups((("alpha-0", "data"),)), m.Nothing()),
    "grow-volumes": (m.Volumes((("alpha-0", "data", 1 << 29),)), m.Nothing()),
    "drbd-resize": (m.Refs(("alpha/0",)), m.Nothing()),
    "write-drbd-files": (m.DrbdFiles(DESIRED, {"alpha": m.Slots(7789, {"alpha-0": (0, 100)},
                                                                101)}),
                         m.Paths(("/etc/drbd.d/alpha.res",))),
    "write-desired": (m.DesiredState(DESIRED), m.Paths(("/etc/iscsiha/desired.toml",))),
    "write-secrets": (m.DesiredState(DESIRED), m.Nothing()),
    "adjust": (m.Resources(("alpha",)), m.Nothing()),
    "target-sessions": (m.Iqns(("iqn.2026-12.com.example:alpha",)),
                        m.Sessions({"iqn.2026-12.com.example:alpha":
                                    ("iqn.2026-12.com.example:hv1",)})),
    "seen-initiators": (m.Nothing(), m.Iqns(("iqn.2026-12.com.example:hv1",))),
    "journal-events": (m.Nothing(),
                       m.JournalEvents((m.JournalEvent("san-a", "promote", 1796630400.5),))),
    "split-brain-facts": (m.SplitBrainVolumes({"alpha-0": ("alpha/0", 100)}),
                          m.SplitBrainFacts({"alpha-0": DETAIL})),
    "split-brain-discard": (m.SplitBrainSide("alpha", 100, "san-b"),
                            m.Commands(("drbdadm disconnect alpha",))),
    "split-brain-connect": (m.SplitBrainSide("alpha", 100, "san-a"),
                            m.Commands(("drbdadm connect alpha",))),
    "audit-copy": (AUDIT, m.Nothing()),
    "support-part": (m.SupportRequest("2026-12-06"), m.SupportPart("san-b", "H4sIAAAA")),
    "upgrade-state": (m.Nothing(), m.UpgradeState(
        "0.1.0", "a", "a", "7216a906-eb4c-57ab-9ccf-eb8f9d6520d4", "none", "staged", "0.1.1",
        False, "")),
    "stage-root": (m.RootImage("0.1.1", "0123abc", "7216a906-eb4c-57ab-9ccf-eb8f9d6520d4",
                               1 << 31, "d0" * 32), m.StagedRoot("b", 61.5)),
    "reboot": (m.Nothing(), m.Nothing()),
}


def _steps_of(protocol: int) -> list[str]:
    return sorted(name for name, (spec, _) in node_steps.STEPS.items() if spec.since <= protocol)


def _as_json(protocol: int) -> dict[str, Any]:
    return {step: {"request": json.loads(codec.dumps(SAMPLES[step][0])),
                   "reply": json.loads(codec.dumps(SAMPLES[step][1]))}
            for step in _steps_of(protocol)}


def test_every_step_has_a_sample() -> None:
    assert sorted(SAMPLES) == sorted(node_steps.STEPS)


def test_the_current_protocol_s_messages_are_the_pinned_ones() -> None:
    """A message that changes without a new protocol number fails here: raise CURRENT,
    keep the previous protocol's form (docs: iscsiha.protocol.version)."""
    path = GOLDEN / f"{CURRENT}.json"
    written = json.dumps(_as_json(CURRENT), indent=1, sort_keys=True) + "\n"
    if os.environ.get("UPDATE_GOLDEN"):
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(written)
    assert written == path.read_text()


@pytest.mark.parametrize("protocol", range(OLDEST, CURRENT + 1))
def test_every_served_protocol_s_pinned_messages_still_decode(protocol: int) -> None:
    pinned = json.loads((GOLDEN / f"{protocol}.json").read_text())
    assert sorted(pinned) == _steps_of(protocol), "a step dropped, or added in an old protocol"
    for step, messages in pinned.items():
        spec, _ = node_steps.STEPS[step]
        codec.decode(spec.request, messages["request"], f"{step} request")
        codec.decode(spec.reply, messages["reply"], f"{step} reply")


def test_the_hello_before_a_step_keeps_within_the_step_s_time_bound() -> None:
    """`iscsiha status` asks the peer with a short bound: a hung peer must not cost more."""
    asked: list[tuple[str, float | None]] = []

    class Runner:
        def run(self, argv: list[str], *, input: str | None = None, check: bool = True,
                timeout: float | None = 60.0, env: Any = None) -> CommandResult:
            asked.append((argv[-1], timeout))
            out = hello_reply() if argv[-1].endswith(" hello") else '{"iqns": []}'
            return CommandResult(tuple(argv), 0, out, "", 0.0)

    boxes = Boxes(Runner(), {"san-a": ip_address("192.0.2.1"),  # type: ignore[arg-type]
                             "san-b": ip_address("192.0.2.2")}, "san-a")
    boxes.call("san-b", m.SEEN_INITIATORS, m.Nothing(), timeout=5.0)
    boxes.call("san-b", m.SEEN_INITIATORS, m.Nothing(), timeout=5.0)
    assert asked == [("/usr/bin/iscsiha node hello", 5.0),
                     (f"/usr/bin/iscsiha node seen-initiators --protocol {CURRENT}", 5.0),
                     (f"/usr/bin/iscsiha node seen-initiators --protocol {CURRENT}", 5.0)]
