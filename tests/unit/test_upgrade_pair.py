"""The pair's rolling upgrade: the record each box keeps, a root staged from a stream,
the order `iscsiha upgrade pair` works in and where it stops, and what a box does at
boot to finish its part."""

from __future__ import annotations

import hashlib
import io
import json
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any, cast

import pytest

from iscsiha.commands import upgrade_pair, upgrade_resume, upgrade_stage, upgrade_steps
from iscsiha.commands.cluster_env import ClusterEnv
from iscsiha.commands.targets import ClusterStatus, TargetStatus
from iscsiha.commands.upgrade_env import UpgradeEnv
from iscsiha.errors import PARTLY_APPLIED, IscsihaError
from iscsiha.executors.runner import Runner
from iscsiha.model import pair_upgrade
from iscsiha.model.bootenv import BootEnv
from iscsiha.model.pair_upgrade import Record
from iscsiha.model.root_image import Release, parse_manifest
from iscsiha.protocol import frames
from iscsiha.protocol import messages as m
from iscsiha.status_report import Health
from tests.unit.root_images import sha256, write_artifact
from tests.unit.test_box_state_stage import UUID_A, UUID_B, staging

NEW = Release("0.2.0", "0123abcd" * 5, UUID_B)
RECORD = Record("staged", "b", NEW, "0.1.0")


def code(exc: pytest.ExceptionInfo[IscsihaError]) -> list[str]:
    return [r.code for r in exc.value.reports]


# -- the record ---------------------------------------------------------------------------

def test_a_record_reads_back_as_written() -> None:
    done = Record("upgraded", "b", NEW, "0.1.0", True, "runs iscsiha 0.2.0 from slot b")
    assert pair_upgrade.parse_record(pair_upgrade.record_json(done), "rec") == done


@pytest.mark.parametrize(("change", "field"), [
    ({"state": "done"}, "state"), ({"slot": "c"}, "slot"), ({"slot": None}, "slot"),
    ({"from_version": ""}, "from_version"), ({"note": "a\x1b[2J"}, "note"),
    ({"left_standby": "yes"}, "left_standby"), ({"release": {"version": "1"}}, "release"),
])
def test_a_damaged_record_is_refused_naming_the_field(change: dict[str, Any],
                                                      field: str) -> None:
    data = {**json.loads(pair_upgrade.record_json(RECORD)), **change}
    with pytest.raises(IscsihaError) as exc:
        pair_upgrade.parse_record(json.dumps(data), "rec")
    assert field in exc.value.reports[0].field


@pytest.mark.parametrize("text", ["", "[]", "{\"format\": 2}", "x" * 20000])
def test_a_record_that_is_not_one_is_refused(text: str) -> None:
    with pytest.raises(IscsihaError) as exc:
        pair_upgrade.parse_record(text, "rec")
    assert code(exc) == ["bad-upgrade-record"]


def test_a_box_back_on_the_new_slot_is_upgraded() -> None:
    done = pair_upgrade.outcome(RECORD, "b", "b", "none")
    assert done is not None and done.state == "upgraded"
    assert done.note == "runs iscsiha 0.2.0 from slot b"


@pytest.mark.parametrize(("trial", "why"), [
    ("failed", "did not come up healthy"), ("armed", "never tried")])
def test_a_box_back_on_the_old_slot_rolled_back_and_says_why(trial: str, why: str) -> None:
    done = pair_upgrade.outcome(RECORD, "a", "a", trial)
    assert done is not None and done.state == "rolled-back"
    assert "back on slot a (iscsiha 0.1.0)" in done.note and why in done.note


def test_a_box_still_on_trial_has_not_settled() -> None:
    assert pair_upgrade.outcome(RECORD, "b", "a", "on-trial") is None


# -- staging from a stream ----------------------------------------------------------------

def _streamed(tmp_path: Path, monkeypatch: pytest.MonkeyPatch
              ) -> tuple[UpgradeEnv, Any, bytes, m.RootImage]:
    env, _, boot, image = staging(tmp_path, monkeypatch, tmp_path / "no-slot-root")
    manifest = parse_manifest(Path(f"{image}.json").read_text(), "json")
    r = manifest.release
    req = m.RootImage(r.version, r.commit, r.root_uuid, manifest.size, manifest.sha256)
    return env, boot, Path(image).read_bytes(), req


def test_a_streamed_root_is_written_checked_recorded_carried_and_armed(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from tests.unit.fake_roots import new_root
    env, _, boot, image = staging(tmp_path, monkeypatch, new_root(tmp_path / "slot"))
    manifest = parse_manifest(Path(f"{image}.json").read_text(), "json")
    r = manifest.release
    req = m.RootImage(r.version, r.commit, r.root_uuid, manifest.size, manifest.sha256)
    staged = upgrade_steps.stage_root(env, req, framed(Path(image).read_bytes()),
                                      lambda line: None)
    assert staged.slot == "b"
    assert sha256(tmp_path / "disk/root-b") == manifest.sha256
    assert boot.written == [BootEnv("a", "b", 1, UUID_A, UUID_B)]
    record = pair_upgrade.parse_record(Path(env.record_path).read_text(), "rec")
    assert (record.state, record.slot, record.release) == ("staged", "b", r)
    # written before the carry: the new root holds it too
    assert (tmp_path / "slot" / pair_upgrade.PATH.lstrip("/")).exists()


def framed(data: bytes) -> io.BytesIO:
    """The image as stage-root's stdin carries it after the request line."""
    return io.BytesIO(b"".join(frames.encode(io.BytesIO(data).read, len(data), "img")))


def test_an_image_travels_as_frames_with_zero_chunks_as_their_length_only() -> None:
    data = bytes(frames.CHUNK) + b"\1" * frames.CHUNK + bytes(frames.CHUNK + 5)
    sent = b"".join(frames.encode(io.BytesIO(data).read, len(data), "img"))
    assert len(sent) == 4 * 9 + frames.CHUNK
    assert b"".join(frames.decode(io.BytesIO(sent).read, len(data))) == data


@pytest.mark.parametrize(("sent", "problem"), [
    (b"X" + (5).to_bytes(8, "big") + b"12345", "bad-frame"),  # neither D nor Z
    (b"Z" + (0).to_bytes(8, "big"), "bad-frame"),  # an empty frame
    (b"Z" + (1 << 40).to_bytes(8, "big"), "bad-frame"),  # past the image's end
    (b"D" + (10).to_bytes(8, "big") + b"12345", "truncated"),
    (b"Z" + (5).to_bytes(8, "big"), "truncated"),  # frames end before the image does
])
def test_frames_that_do_not_add_up_to_the_image_are_refused(sent: bytes, problem: str) -> None:
    with pytest.raises(IscsihaError) as exc:
        b"".join(frames.decode(io.BytesIO(sent).read, 10))
    assert code(exc) == [problem]


@pytest.mark.parametrize(("cut", "bad", "first"), [
    (4096, False, "truncated"), (0, True, "corrupt-image")])
def test_a_stream_short_or_different_from_its_manifest_is_never_armed(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch, cut: int, bad: bool,
        first: str) -> None:
    env, boot, data, req = _streamed(tmp_path, monkeypatch)
    if bad:
        data = data[:5000] + bytes([data[5000] ^ 1]) + data[5001:]
    stream = framed(data)
    if cut:
        stream = io.BytesIO(stream.getvalue()[:-cut])
    with pytest.raises(IscsihaError) as exc:
        upgrade_steps.stage_root(env, req, stream, lambda line: None)
    assert code(exc)[0] == first
    assert boot.written == [] and not Path(env.record_path).exists()
    if bad:
        assert code(exc) == ["corrupt-image", PARTLY_APPLIED]


def test_the_stage_root_step_without_a_stream_is_refused() -> None:
    from iscsiha.commands import node_steps
    box = node_steps.Box(cast(Runner, None), speaks=node_steps.THIS_BUILD)
    ok, out = node_steps.serve(box, "stage-root", json.dumps({
        "version": "0.2.0", "commit": "abc", "root_uuid": UUID_B, "size": 10,
        "sha256": "0" * 64}))
    assert not ok and "no-image-stream" in out


@pytest.mark.parametrize("change", [
    {"size": 0}, {"size": 1 << 40}, {"sha256": "X" * 64}, {"root_uuid": "../etc"},
    {"version": "-rf"}, {"commit": "a b"}])
def test_a_stage_root_request_with_a_bad_field_is_refused_before_reading_data(
        change: dict[str, Any]) -> None:
    from iscsiha.commands import node_steps
    stream = io.BytesIO(b"x" * 100)
    box = node_steps.Box(cast(Runner, None), stream=stream)
    request = {"version": "0.2.0", "commit": "abc", "root_uuid": UUID_B, "size": 10,
               "sha256": "0" * 64, **change}
    ok, out = node_steps.serve(box, "stage-root", json.dumps(request))
    assert not ok and stream.tell() == 0
    assert next(iter(change)) in json.loads(out)["reports"][0]["field"]


def test_a_box_refuses_the_upgrade_steps_in_protocol_1() -> None:
    from iscsiha.commands import node_steps
    ok, out = node_steps.serve(node_steps.Box(cast(Runner, None)), "upgrade-state", "{}", 1)
    assert not ok and "peer-step-unknown" in out


# -- feeding a command ----------------------------------------------------------------------

SINK = ("import sys, hashlib; line = sys.stdin.buffer.readline(); "
        "data = sys.stdin.buffer.read(); "
        "print(line.decode().strip(), len(data), hashlib.sha256(data).hexdigest())")


def test_a_fed_command_gets_every_part_in_order() -> None:
    data = bytes(range(256)) * 40000
    parts = [b'{"a": 1}\n', data[:1 << 20], data[1 << 20:]]
    result = Runner().feed([sys.executable, "-c", SINK], parts, 60.0)
    digest = hashlib.sha256(data).hexdigest()
    assert result.ok and result.stdout == f'{{"a": 1}} {len(data)} {digest}\n'


def test_a_command_that_stops_reading_ends_the_feeding_with_its_own_answer() -> None:
    refuse = "import sys; sys.stdin.buffer.readline(); print('refused'); sys.exit(1)"
    sent: list[int] = []

    def parts() -> Iterator[bytes]:
        yield b"{}\n"
        for n in range(64):
            sent.append(n)
            yield bytes(1 << 20)
    result = Runner().feed([sys.executable, "-c", refuse], parts(), 60.0)
    assert result.returncode == 1 and result.stdout.strip() == "refused"
    assert len(sent) < 64  # it stopped sending


def test_an_error_making_the_parts_stops_the_command() -> None:
    def parts() -> Iterator[bytes]:
        yield b"{}\n"
        raise IscsihaError.single("unreadable", "file", "img", "a file root may read")
    with pytest.raises(IscsihaError) as exc:
        Runner().feed([sys.executable, "-c", SINK], parts(), 60.0)
    assert code(exc) == ["unreadable"]


# -- the orchestration ----------------------------------------------------------------------

class Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def monotonic(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.now += seconds


def state(booted: str | None = "a", trial: str = "none", record: str = "none",
          good_root: str = UUID_A, left: bool = False, release: str = "0.1.0",
          note: str = "") -> m.UpgradeState:
    return m.UpgradeState(release, booted, booted or "a", good_root, trial,  # type: ignore[arg-type]
                          record, None, left, note)  # type: ignore[arg-type]


class Pair:
    """The two boxes as the orchestration sees them; ``log`` is everything it did."""

    def __init__(self, back: list[m.UpgradeState | None] | None = None) -> None:
        self.here = "san-a"
        self.names = ["san-a", "san-b"]
        self.log: list[str] = []
        self.states = {"san-a": state(), "san-b": state()}
        # what san-b answers after its reboot, one per poll (None: unreachable)
        self.back = back if back is not None else [None, state(
            "b", record="upgraded", good_root=UUID_B, left=True, release="0.2.0",
            note="runs iscsiha 0.2.0 from slot b; out of standby")]
        self.rebooted = False

    def call(self, node: str, step: m.Step[Any, Any], request: Any,
             timeout: float = 300.0) -> Any:
        self.log.append(f"{step.name} {node}")
        if step is m.UPGRADE_STATE:
            if node == "san-b" and self.rebooted:
                answer = self.back.pop(0) if len(self.back) > 1 else self.back[0]
                if answer is None:
                    raise IscsihaError.single("step-failed", "node", node, "up")
                return answer
            return self.states[node]
        if step is m.REBOOT:
            self.rebooted = True
        return m.Nothing()

    def forget(self, node: str) -> None:
        pass

    def call_feeding(self, node: str, step: m.Step[Any, Any], request: Any,
                     parts: Iterator[bytes], timeout: float) -> Any:
        size = sum(len(p) for p in parts)  # the frames: an 8 MiB image of mostly zeros
        self.log.append(f"{step.name} {node} {request.version} {request.size}")
        assert size < request.size
        return m.StagedRoot("b", 12.0)


@pytest.fixture
def pair(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> tuple[Pair, str, list[str]]:
    image = tmp_path / "iscsiha-root.img"
    write_artifact(image, 8, UUID_B)
    boxes = Pair()
    health = [Health.HEALTHY]
    monkeypatch.setattr(upgrade_pair, "live_status", lambda env, sessions: None)
    monkeypatch.setattr(upgrade_pair, "assess", lambda st: (health[0], ("why",)))
    monkeypatch.setattr(upgrade_pair, "_vacate", lambda env, node, progress, timeout:
                        boxes.log.append(f"standby {node} True"))
    monkeypatch.setattr(upgrade_stage, "stage", lambda env, path, progress, **kw:
                        boxes.log.append(f"stage here {kw}"))
    monkeypatch.setattr(upgrade_steps, "reboot", lambda runner: boxes.log.append("reboot here"))
    said: list[str] = []
    return boxes, str(image), said


def _env(boxes: Pair) -> ClusterEnv:
    return cast(ClusterEnv, type("Env", (), {"both_boxes": lambda self: boxes,
                                             "clock": Clock(), "runner": None})())


def test_the_other_box_goes_first_and_this_box_reboots_last(
        pair: tuple[Pair, str, list[str]]) -> None:
    boxes, image, said = pair
    done = upgrade_pair.upgrade_pair(cast(UpgradeEnv, None), _env(boxes), image, said.append)
    assert [e for e in boxes.log if not e.startswith("upgrade-state")] == [
        f"stage-root san-b 0.2.0 {8 << 20}", "standby san-b True", "reboot san-b",
        "stage here {'record_from': '0.1.0'}", "standby san-a True", "reboot here"]
    assert done.upgraded == ("san-b",) and done.rebooting == "san-a"
    assert "san-b: runs iscsiha 0.2.0 from slot b; out of standby" in said
    assert "the pair is healthy again" in said[-3]
    assert upgrade_pair.summary(done).endswith("san-a reboots now and finishes its part at boot")


def test_a_peer_back_on_its_old_root_stops_the_upgrade_before_this_box_is_touched(
        pair: tuple[Pair, str, list[str]]) -> None:
    boxes, image, said = pair
    boxes.back = [state("a", trial="failed", record="rolled-back", left=True,
                        note="back on slot a (iscsiha 0.1.0): not kept")]
    with pytest.raises(IscsihaError) as exc:
        upgrade_pair.upgrade_pair(cast(UpgradeEnv, None), _env(boxes), image, said.append)
    assert code(exc) == ["upgrade-rolled-back"]
    assert "this box was not touched" in exc.value.reports[0].message
    assert not any(e.endswith("here") or e.startswith("stage here") or e == "standby san-a True"
                   for e in boxes.log)


def test_a_peer_that_never_comes_back_is_reported_with_what_was_last_seen(
        pair: tuple[Pair, str, list[str]]) -> None:
    boxes, image, said = pair
    boxes.back = [None]
    with pytest.raises(IscsihaError) as exc:
        upgrade_pair.upgrade_pair(cast(UpgradeEnv, None), _env(boxes), image, said.append,
                                  upgrade_pair.Timeouts(back=60.0))
    assert code(exc) == ["upgrade-not-back"] and "not answering" in exc.value.reports[0].message
    assert any(line.startswith("san-b: not answering yet") for line in said)


def test_a_pair_that_stays_unhealthy_is_reported_with_its_last_reasons(
        monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(upgrade_pair, "live_status", lambda env, sessions: None)
    monkeypatch.setattr(upgrade_pair, "assess", lambda st: (
        Health.DEGRADED, ("volume alpha-0 is resyncing",)))
    said: list[str] = []
    env = cast(ClusterEnv, type("Env", (), {"clock": Clock()})())
    with pytest.raises(IscsihaError) as exc:
        upgrade_pair._wait_healthy(env, said.append, 100.0)
    report = exc.value.reports[0]
    assert (report.code, report.value) == ("pair-not-healthy", "degraded")
    assert "resyncing" in report.message
    assert said and all("resyncing" in line for line in said)


@pytest.mark.parametrize(("who", "st", "refusal"), [
    ("san-b", state(trial="armed"), "trial-pending"),
    ("san-a", state(trial="on-trial"), "trial-pending"),
    ("san-b", state(booted=None), "not-ab-booted"),
])
def test_an_upgrade_is_refused_before_anything_moves(
        pair: tuple[Pair, str, list[str]], who: str, st: m.UpgradeState,
        refusal: str) -> None:
    boxes, image, said = pair
    boxes.states[who] = st
    with pytest.raises(IscsihaError) as exc:
        upgrade_pair.upgrade_pair(cast(UpgradeEnv, None), _env(boxes), image, said.append)
    assert code(exc) == [refusal] and exc.value.reports[0].field == "node"
    assert all(e.startswith("upgrade-state") for e in boxes.log)


def test_an_unhealthy_pair_is_refused_with_the_reasons(
        pair: tuple[Pair, str, list[str]], monkeypatch: pytest.MonkeyPatch) -> None:
    boxes, image, said = pair
    monkeypatch.setattr(upgrade_pair, "assess", lambda st: (
        Health.DEGRADED, ("volume alpha-0 is resyncing",)))
    with pytest.raises(IscsihaError) as exc:
        upgrade_pair.upgrade_pair(cast(UpgradeEnv, None), _env(boxes), image, said.append)
    assert code(exc) == ["pair-not-healthy"]
    assert "resyncing" in exc.value.reports[0].message and boxes.log == []


def test_a_box_already_on_the_new_root_is_skipped(pair: tuple[Pair, str, list[str]]) -> None:
    boxes, image, said = pair
    boxes.states["san-b"] = state("b", good_root=UUID_B, release="0.2.0")
    done = upgrade_pair.upgrade_pair(cast(UpgradeEnv, None), _env(boxes), image, said.append)
    assert done.skipped == ("san-b",) and done.rebooting == "san-a"
    assert not any("san-b" in e for e in boxes.log if not e.startswith("upgrade-state"))


def test_a_corrupt_image_is_refused_before_anything_is_sent(
        pair: tuple[Pair, str, list[str]]) -> None:
    boxes, image, said = pair
    data = bytearray(Path(image).read_bytes())
    data[3000] ^= 1
    Path(image).write_bytes(bytes(data))
    with pytest.raises(IscsihaError) as exc:
        upgrade_pair.upgrade_pair(cast(UpgradeEnv, None), _env(boxes), image, said.append)
    assert code(exc) == ["corrupt-image"]
    assert all(e.startswith("upgrade-state") for e in boxes.log)


class Pacemaker:
    def __init__(self, log: list[str], wait_fails: bool = False) -> None:
        self.log = log
        self.wait_fails = wait_fails

    def move(self, gid: str, node: str) -> None:
        self.log.append(f"move {gid} {node}")

    def wait(self, timeout: float) -> None:
        self.log.append("wait")
        if self.wait_fails:
            raise IscsihaError.single("cluster-busy", "cluster", 1, "settled")

    def clear(self, gid: str) -> None:
        self.log.append(f"clear {gid}")


def _serving(monkeypatch: pytest.MonkeyPatch, log: list[str]) -> None:
    targets = tuple(TargetStatus(n, f"iqn.x:{n}", (on,), "san-b", "auto", True)
                    for n, on in (("alpha", "san-a"), ("beta", "san-b"), ("gamma", "san-b")))
    monkeypatch.setattr(upgrade_pair, "status", lambda pacemaker: ClusterStatus(
        (("san-a", True), ("san-b", True)), targets, ()))
    monkeypatch.setattr(upgrade_pair, "standby", lambda env, node, on, timeout, progress:
                        log.append(f"standby {node} {on}"))


def test_a_box_s_targets_move_as_planned_moves_before_it_goes_into_standby(
        monkeypatch: pytest.MonkeyPatch) -> None:
    log: list[str] = []
    _serving(monkeypatch, log)
    env = cast(ClusterEnv, type("Env", (), {"pacemaker": Pacemaker(log)})())
    upgrade_pair._vacate(env, "san-b", lambda line: None, 300.0)
    assert log == ["move target-beta san-a", "move target-gamma san-a", "wait",
                   "standby san-b True", "clear target-beta", "clear target-gamma"]


def test_the_moves_preferences_go_when_the_moves_fail(monkeypatch: pytest.MonkeyPatch) -> None:
    log: list[str] = []
    _serving(monkeypatch, log)
    env = cast(ClusterEnv, type("Env", (), {"pacemaker": Pacemaker(log, wait_fails=True)})())
    with pytest.raises(IscsihaError):
        upgrade_pair._vacate(env, "san-b", lambda line: None, 300.0)
    assert log[-2:] == ["clear target-beta", "clear target-gamma"]
    assert "standby san-b True" not in log


# -- at boot ----------------------------------------------------------------------------------

class BootBox:
    def __init__(self, tmp_path: Path, booted: str, good: str, trial: str) -> None:
        self.record_path = str(tmp_path / "pair-upgrade.json")
        self.st = type("St", (), {"booted": booted, "good": good, "trial_state": trial,
                                  "disk": "vda"})()


@pytest.fixture
def boot(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    log: list[str] = []
    monkeypatch.setattr(upgrade_resume.upgrade_status, "status", lambda env: env.st)
    monkeypatch.setattr(upgrade_resume, "_wait_online", lambda *a: log.append("online"))
    monkeypatch.setattr(upgrade_resume, "standby", lambda env, node, on, timeout, progress:
                        log.append(f"standby {node} {on}"))
    return log


def test_at_boot_a_box_back_on_its_new_root_records_it_and_leaves_standby(
        tmp_path: Path, boot: list[str]) -> None:
    box = BootBox(tmp_path, "b", "b", "none")
    Path(box.record_path).write_text(pair_upgrade.record_json(RECORD))
    done = upgrade_resume.resume(cast(UpgradeEnv, box), cast(ClusterEnv, None), "san-b",
                                 600.0, lambda line: None)
    assert done is not None and (done.state, done.left_standby) == ("upgraded", True)
    assert boot == ["online", "standby san-b False"]
    assert pair_upgrade.parse_record(Path(box.record_path).read_text(), "r") == done


def test_at_boot_a_trial_not_yet_marked_good_is_left_alone(
        tmp_path: Path, boot: list[str]) -> None:
    box = BootBox(tmp_path, "b", "a", "on-trial")
    Path(box.record_path).write_text(pair_upgrade.record_json(RECORD))
    assert upgrade_resume.resume(cast(UpgradeEnv, box), cast(ClusterEnv, None), "san-b",
                                 600.0, lambda line: None) is None
    assert boot == [] and pair_upgrade.parse_record(
        Path(box.record_path).read_text(), "r").state == "staged"


def test_at_boot_a_box_that_cannot_leave_standby_records_why(
        tmp_path: Path, boot: list[str], monkeypatch: pytest.MonkeyPatch) -> None:
    box = BootBox(tmp_path, "a", "a", "failed")
    Path(box.record_path).write_text(pair_upgrade.record_json(RECORD))

    def offline(*args: Any) -> None:
        raise IscsihaError.single("not-online", "node", "san-b", "online", "no quorum")
    monkeypatch.setattr(upgrade_resume, "_wait_online", offline)
    with pytest.raises(IscsihaError):
        upgrade_resume.resume(cast(UpgradeEnv, box), cast(ClusterEnv, None), "san-b", 600.0,
                              lambda line: None)
    record = pair_upgrade.parse_record(Path(box.record_path).read_text(), "r")
    assert (record.state, record.left_standby) == ("rolled-back", False)
    assert "still in standby" in record.note and "no quorum" in record.note


def test_at_boot_without_a_record_nothing_happens(tmp_path: Path, boot: list[str]) -> None:
    box = BootBox(tmp_path, "a", "a", "none")
    assert upgrade_resume.resume(cast(UpgradeEnv, box), cast(ClusterEnv, None), "san-b",
                                 600.0, lambda line: None) is None
    assert boot == []
