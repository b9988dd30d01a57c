"""A DRBD split brain in the lab, made on purpose, then found and resolved by
`iscsiha split-brain`.

On a volume of its own (no target exports it), with Pacemaker told to leave that
volume alone: DRBD's fencing is set aside for the moment, both sides are
disconnected, each side writes its own data (the Secondary promoted alone), the
Secondary is demoted again and both reconnect, so DRBD finds the split brain and
both stay StandAlone. Pacemaker then gets the volume back, as it has it after a real
split brain, and the command does the rest. The tests run in file order on that one
split brain; the volume is deleted at the end.
"""

from __future__ import annotations

import re
import tomllib
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import pytest
from iscsiha_lab.desired import cluster_data
from iscsiha_lab.initiator import iqn, wait_for
from iscsiha_lab.lab import Lab
from iscsiha_lab.pair import apply, iscsiha, kernel_log

pytestmark = pytest.mark.lab
BOXES = ("san-a", "san-b")
VOLUME = "splitb"  # exported by a target of the same name: drbdadm calls it that too
CLONE = f"drbd-{VOLUME}-clone"
PORTAL = "10.99.30.104"  # apart from the other lab tests' portals
DESIRED = "/etc/iscsiha/desired.toml"  # what the last apply left on the boxes
SPLIT = "Split-Brain detected but unresolved, dropping connection"


@dataclass(frozen=True)
class SplitBrain:
    keep: str  # the Primary: its data stays
    gone: str  # the Secondary: its changes are discarded
    minor: int
    size: int  # the DRBD device's bytes
    kept: str  # sha256 of the kept side's data, before the resolution
    discarded: str  # and of the side discarded


def _sh(lab: Lab, box: str, script: str, timeout: float = 120) -> str:
    return lab.exec(box, ["sh", "-c", script], timeout=timeout).check().out


def _drbd(lab: Lab, box: str) -> tuple[str, str, str]:
    """(role, connection, disks) of the volume on ``box``; "?" where drbdadm says nothing."""
    # Volume 0, the LUN: the resource also holds the target's reservations volume.
    words = lab.exec(box, ["sh", "-c", f"echo $(drbdadm role {VOLUME}/0) "
                                       f"$(drbdadm cstate {VOLUME}/0) "
                                       f"$(drbdadm dstate {VOLUME}/0)"]).out.split()
    if len(words) != 3:
        return "?", "?", "?"
    return words[0].split("/")[0], words[1], words[2]


def _in_sync(lab: Lab) -> bool:
    states = [_drbd(lab, box) for box in BOXES]
    return (all(s[1:] == ("Connected", "UpToDate/UpToDate") for s in states)
            and sorted(s[0] for s in states) == ["Primary", "Secondary"])


def _digest(lab: Lab, box: str, size: int) -> str:
    """sha256 of the replicated bytes on ``box``'s own disk, past any cache."""
    return _sh(lab, box, f"dd if=/dev/data/{VOLUME} iflag=direct,count_bytes bs=1M "
                         f"count={size} status=none | sha256sum").split()[0]


def _split_lines(lab: Lab, box: str, minor: int) -> int:
    return len(kernel_log(lab, box, f"drbd{minor}: {SPLIT}").splitlines())


def _pacemaker(lab: Lab, managed: bool) -> None:
    """Pacemaker leaves the volume's clone alone (maintenance) or manages it again."""
    change = (["--delete-parameter", "maintenance"] if managed else
              ["--set-parameter", "maintenance", "--parameter-value", "true"])
    lab.exec("san-a", ["crm_resource", "--resource", CLONE, "--meta", *change]).check()
    lab.exec("san-a", ["crm_resource", "--wait", "--timeout=120s"], timeout=180).check()


def _desired(lab: Lab) -> dict[str, Any]:
    """The desired state the cluster runs now (earlier tests' volumes stay as they are)."""
    found = lab.exec("san-a", ["cat", DESIRED])
    if found.ok:
        return tomllib.loads(found.out)
    return cluster_data(lab)


def _make_split_brain(lab: Lab) -> SplitBrain:
    (keep,) = [box for box in BOXES if _drbd(lab, box)[0] == "Primary"]
    (gone,) = [box for box in BOXES if box != keep]
    minor = int(_sh(lab, keep, f"drbdadm sh-minor {VOLUME}/0"))
    device = f"/dev/drbd{minor}"
    size = int(_sh(lab, keep, f"blockdev --getsize64 {device}"))  # only a Primary opens it
    before = sum(_split_lines(lab, box, minor) for box in BOXES)
    _pacemaker(lab, managed=False)
    # With resource-and-stonith the forced promotion below would run crm-fence-peer.sh,
    # whose constraint forbids promoting the kept side once Pacemaker is back; and the
    # Primary would freeze its I/O when it loses its peer.
    for box in BOXES:
        _sh(lab, box, f"drbdadm disk-options --fencing=dont-care {VOLUME}")
    # The Secondary may still wait for its peer; 8.4 refuses to disconnect a StandAlone one.
    for box in (keep, gone):
        _sh(lab, box, f'[ "$(drbdadm cstate {VOLUME}/0)" = StandAlone ] || '
                      f"drbdadm disconnect {VOLUME}")
    wait_for("both sides StandAlone",
             lambda: all(_drbd(lab, box)[1] == "StandAlone" for box in BOXES), timeout=30)
    _sh(lab, keep, f"dd if=/dev/urandom of={device} bs=1M count=2 oflag=direct status=none")
    _sh(lab, gone, f"drbdadm primary --force {VOLUME} && dd if=/dev/urandom of={device} "
                   f"bs=1M seek=8 count=3 oflag=direct status=none && udevadm settle && "
                   f"for i in 1 2 3 4 5; do drbdadm secondary {VOLUME} && exit 0; sleep 1; "
                   "done; exit 1")
    kept, discarded = _digest(lab, keep, size), _digest(lab, gone, size)
    assert kept != discarded
    for box in BOXES:
        _sh(lab, box, f"drbdadm disk-options --fencing=resource-and-stonith {VOLUME}")
    for box in (keep, gone):
        _sh(lab, box, f"drbdadm connect {VOLUME}")
    wait_for("DRBD finding the split brain", lambda: sum(
        _split_lines(lab, box, minor) for box in BOXES) > before and "StandAlone" in {
        _drbd(lab, box)[1] for box in BOXES}, timeout=60)
    # The side that lost the connection first may still wait for its peer: as DRBD leaves
    # both after a split brain found at once, and as the checks below expect.
    for box in BOXES:
        _sh(lab, box, f'[ "$(drbdadm cstate {VOLUME}/0)" = StandAlone ] || '
                      f"drbdadm disconnect {VOLUME}")
    # As after a real split brain: Pacemaker manages the volume, the Primary is promoted.
    _pacemaker(lab, managed=True)
    assert [_drbd(lab, box)[0] for box in (keep, gone)] == ["Primary", "Secondary"]
    return SplitBrain(keep, gone, minor, size, kept, discarded)


@pytest.fixture(scope="module")
def split(lab: Lab) -> Iterator[SplitBrain]:
    data = _desired(lab)
    volumes = [v for v in data.get("volumes", []) if v["name"] != VOLUME]
    targets = [t for t in data.get("targets", []) if t["name"] != VOLUME]
    target = {"name": VOLUME, "iqn": iqn(VOLUME), "portals": [PORTAL],
              "preferred_node": BOXES[0], "initiators": [iqn("nobody")],
              "luns": [{"lun": 0, "volume": VOLUME}]}
    result = apply(lab, {**data, "volumes": [*volumes, {"name": VOLUME, "size": "32M"}],
                         "targets": [*targets, target]})
    assert result.ok, result.out + result.err
    try:
        wait_for(f"{VOLUME} connected, UpToDate on both boxes, Primary on one",
                 lambda: _in_sync(lab), timeout=240)
        # And its target started: the split brain is made with the cluster at rest.
        lab.exec("san-a", ["crm_resource", "--wait", "--timeout=180s"], timeout=240).check()
        yield _make_split_brain(lab)
    finally:
        # Whatever happened: Pacemaker manages the clone again, then the target goes
        # (apply stops it and removes its DRBD resource on both boxes), then the volume.
        lab.exec("san-a", ["crm_resource", "--resource", CLONE, "--meta",
                           "--delete-parameter", "maintenance"])
        result = apply(lab, {**data, "volumes": [*volumes, {"name": VOLUME, "size": "32M"}],
                             "targets": targets})
        assert result.ok, result.out + result.err
        result = apply(lab, {**data, "volumes": volumes, "targets": targets}, "--delete",
                       VOLUME)
        assert result.ok, result.out + result.err


def test_the_split_brain_is_listed_with_both_sides_changes(lab: Lab, split: SplitBrain) -> None:
    listed = iscsiha(lab, "split-brain")
    assert listed.ok, listed.out + listed.err
    out = listed.out
    print(f"\niscsiha split-brain:\n{out}")
    assert f"volume {VOLUME} (drbd{split.minor}, target {VOLUME}): SPLIT BRAIN" in out
    rows = {line.split()[0]: line.split() for line in out.splitlines()
            if line.split()[:1] in ([split.keep], [split.gone])}
    assert rows[split.keep][1:4] == ["Primary", "UpToDate", "StandAlone"]
    assert rows[split.gone][1:4] == ["Secondary", "UpToDate", "StandAlone"]
    # Each side's writes, as DRBD counts them: 2 MiB on the kept side, 3 MiB on the other.
    # (From the end: the kept side's "serves" column names its target, in two words.)
    assert rows[split.keep][-2] == rows[split.gone][-2] == "MiB"
    assert 2.0 <= float(rows[split.keep][-3]) < 3.0 <= float(rows[split.gone][-3]) < 4.0
    assert f"drbd{split.minor}: {SPLIT}" in out  # "drbd splitb/0 drbd2: Split-Brain ..."
    assert f"iscsiha split-brain {VOLUME} --discard {split.gone}`" in out


@pytest.mark.parametrize("node, code", [("keep", "discard-side-active"),
                                        ("san-z", "unknown-node")])
def test_discarding_the_primary_or_an_unknown_box_is_refused(
        lab: Lab, split: SplitBrain, node: str, code: str) -> None:
    refused = iscsiha(lab, "split-brain", VOLUME, "--discard",
                      split.keep if node == "keep" else node, "--yes")
    assert refused.returncode == 1, refused.out + refused.err
    assert code in refused.err and "nothing was applied" in refused.err, refused.err
    assert [_drbd(lab, box)[:2] for box in (split.keep, split.gone)] == [
        ("Primary", "StandAlone"), ("Secondary", "StandAlone")]


def test_discarding_the_secondary_resyncs_it_to_the_kept_data(
        lab: Lab, split: SplitBrain) -> None:
    resolved = iscsiha(lab, "split-brain", VOLUME, "--discard", split.gone, "--yes",
                       "--timeout", "300", timeout=420)
    print(f"\n{resolved.out}{resolved.err}")
    assert resolved.ok, resolved.out + resolved.err
    assert (f"split brain on {VOLUME} resolved: kept {split.keep}'s data, discarded "
            f"{split.gone}'s changes; resynced") in resolved.out
    # Both sides' changed blocks (2 + 3 MiB, apart), not the whole 32 MiB volume.
    copied = re.search(r"resynced (\d+) KiB", resolved.out)
    assert copied and 5 * 1024 <= int(copied.group(1)) < 32 * 1024, resolved.out
    assert _in_sync(lab), [_drbd(lab, box) for box in BOXES]
    # The discarded side now holds the kept side's bytes, which did not change.
    assert {_digest(lab, box, split.size) for box in BOXES} == {split.kept}
    assert f"drbd{split.minor}: Split-Brain detected, manually solved. Sync from peer node" \
        in _sh(lab, split.gone, "dmesg")
    # Pacemaker has the clone back, and nothing pending or failed.
    resources = _sh(lab, "san-a", "cibadmin --query --scope resources")
    assert 'name="maintenance"' not in resources
    lab.exec("san-a", ["crm_resource", "--wait", "--timeout=60s"], timeout=120).check()
    assert iscsiha(lab, "split-brain").out.startswith("no volume is in split brain")
