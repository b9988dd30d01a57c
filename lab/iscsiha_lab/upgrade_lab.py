"""The pair's rolling upgrade in the lab (`iscsiha upgrade pair`, docs/upgrade.md).

The next release is a real build: image/build from the same source with a new
release number (``--version``) and SOURCE_DATE_EPOCH one second later, so its root
filesystem has a new UUID. Its lab root (the appliance root plus the UML kernel's
modules) is what the boxes stage: the lab boots each appliance from a GPT boot disk
through a stand-in for GRUB's A/B choice (iscsiha_lab.boot_loader).

Two scenarios, each run under the verifier by iscsiha_lab.faults.run: a new root that
does not come up healthy (the lab masks the self-check on the trial boot's kernel
command line) rolls back by itself and stops the upgrade, and the whole pair goes to
the next release.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from iscsiha import __version__
from iscsiha.model.root_image import parse_manifest
from iscsiha_lab.faults import Scenario
from iscsiha_lab.initiator import wait_for
from iscsiha_lab.lab import Lab
from iscsiha_lab.pair import TARGETS, CheckFailed, other, target_on, wait_healthy
from iscsiha_lab.uml import GUEST_SHARE_MOUNT

IMAGE = "iscsiha-lab-root.ext4"
SIDECARS = (".sha256", ".json")
UNHEALTHY_TRIAL = ("systemd.mask=iscsiha-selfcheck.service",)
UPGRADE_TIMEOUT = 2400.0  # the command, both boxes: two stages, a reboot, a resync
BACK_TIMEOUT = 900.0  # this box's own reboot and resume, after the command ended
STEP_LINE = re.compile(r"^iscsiha upgrade: \[\s*(\d+) s\] (.*)$")


def next_version(version: str = __version__) -> str:
    return f"{version}.post1"


def manifest_of(image: Path) -> dict[str, Any]:
    data: dict[str, Any] = json.loads(Path(f"{image}.json").read_text())
    parse_manifest(json.dumps(data), f"{image}.json")  # as the boxes will check it
    return data


def next_image(repo: Path, current: Path, out: Path) -> Path:
    """The next release's lab root in ``out``: built from ``repo`` unless one built from
    the same commit as ``current`` (the lab root the boxes run, with its manifest) is
    there already."""
    image = out / IMAGE
    want = manifest_of(current)
    if image.exists() and Path(f"{image}.json").exists():
        have = manifest_of(image)
        if have["commit"] == want["commit"] and have["version"] == next_version():
            return image
    epoch = int(subprocess.run(["git", "-C", str(repo), "log", "-1", "--format=%ct"],
                               capture_output=True, text=True, check=True).stdout) + 1
    started = time.monotonic()
    subprocess.run([str(repo / "image/build"), "--no-disk", "--version", next_version(),
                    "--out", str(out)], check=True,
                   env={**os.environ, "SOURCE_DATE_EPOCH": str(epoch)})
    print(f"built the next release {next_version()} in {time.monotonic() - started:.0f} s")
    if manifest_of(image)["root_uuid"] == want["root_uuid"]:
        raise CheckFailed(f"{image} has the running root's UUID {want['root_uuid']}")
    return image


def offer(lab: Lab, node: str, image: Path) -> str:
    """The image and its sidecars in the node's share folder (hard links: nothing is
    copied); the path the node reads them at."""
    folder = lab.paths.share_dir(node) / "upgrade"
    folder.mkdir(exist_ok=True)
    for suffix in ("", *SIDECARS):
        source, dest = Path(f"{image}{suffix}"), folder / f"{IMAGE}{suffix}"
        dest.unlink(missing_ok=True)
        try:
            os.link(source, dest)
        except OSError:  # another filesystem
            shutil.copyfile(source, dest)
    return f"{GUEST_SHARE_MOUNT}/upgrade/{IMAGE}"


def slots(lab: Lab, node: str) -> dict[str, Any]:
    result = lab.exec(node, ["iscsiha", "upgrade", "status", "--json"], timeout=120).check()
    data: dict[str, Any] = json.loads(result.out)
    return data


def record(lab: Lab, node: str) -> dict[str, Any] | None:
    result = lab.exec(node, ["cat", "/var/lib/iscsiha/pair-upgrade.json"], timeout=60)
    return json.loads(result.out) if result.ok else None


def release(lab: Lab, node: str) -> str:
    return lab.exec(node, ["iscsiha", "--version"], timeout=60).check().out.split()[-1]


def steps(output: str) -> list[tuple[int, str]]:
    """The command's progress lines: (seconds since it began, what it said)."""
    return [(int(m.group(1)), m.group(2)) for m in map(STEP_LINE.match, output.splitlines())
            if m]


def _upgrade(lab: Lab, here: str, path: str) -> tuple[int, str, float]:
    started = time.monotonic()
    result = lab.exec(here, ["iscsiha", "upgrade", "pair", path], timeout=UPGRADE_TIMEOUT)
    return result.returncode, result.out + result.err, time.monotonic() - started


def failed_upgrade(lab: Lab, image: Path, here: str = "san-a") -> dict[str, Any]:
    """The other box's new root is not healthy: it boots its old root again by itself,
    leaves standby, and the upgrade stops with a report; this box is not touched."""
    peer = other(here)
    before = {n: release(lab, n) for n in (here, peer)}
    path = offer(lab, here, image)
    lab.trial_words(peer, UNHEALTHY_TRIAL)
    fault_at = time.time()
    code, output, seconds = _upgrade(lab, here, path)
    print(f"iscsiha upgrade pair (the trial made unhealthy), exit {code} in {seconds:.0f} s:\n"
          f"{output}")
    if code != 1 or "upgrade-rolled-back" not in output:
        raise CheckFailed(f"`iscsiha upgrade pair` with an unhealthy trial on {peer}: "
                          f"exit {code}, not 1 with upgrade-rolled-back")
    fell_back, untouched = slots(lab, peer), slots(lab, here)
    if (fell_back["booted"], fell_back["good"], fell_back["trial_state"]) != ("a", "a", "failed"):
        raise CheckFailed(f"{peer} after its unhealthy trial: {fell_back}")
    if untouched["trial_state"] != "none" or untouched["booted"] != "a":
        raise CheckFailed(f"{here} was touched: {untouched}")
    after = {n: release(lab, n) for n in (here, peer)}
    if after != before:
        raise CheckFailed(f"releases changed: {before} -> {after}")
    rec = record(lab, peer)
    if rec is None or rec["state"] != "rolled-back" or not rec["left_standby"]:
        raise CheckFailed(f"{peer}'s record: {rec}")
    wait_healthy(lab, "the pair healthy after the rolled-back upgrade")
    return {"fault_at": fault_at, "upgrade_s": round(seconds, 1), "steps": steps(output),
            "peer_note": rec["note"]}


def rolling_upgrade(lab: Lab, image: Path, here: str = "san-a") -> dict[str, Any]:
    """Both boxes to the next release: the other box, then this one, which finishes its
    part after its own reboot."""
    peer = other(here)
    want = manifest_of(image)
    path = offer(lab, here, image)
    fault_at = time.time()
    code, output, seconds = _upgrade(lab, here, path)
    print(f"iscsiha upgrade pair, exit {code} in {seconds:.0f} s:\n{output}")
    if code != 0:
        raise CheckFailed(f"`iscsiha upgrade pair` failed (exit {code})")
    started = time.monotonic()

    def settled() -> bool:
        try:
            rec = record(lab, here)
        except Exception:  # rebooting: the channel is down
            return False
        return rec is not None and rec["state"] != "staged" and rec["left_standby"]
    wait_for(f"{here} back from its reboot and out of standby", settled, timeout=BACK_TIMEOUT)
    back_s = time.monotonic() - started
    wait_healthy(lab, "the pair healthy after the rolling upgrade")
    for node in (here, peer):
        st, rec = slots(lab, node), record(lab, node)
        new = next(s for s in st["slots"] if s["slot"] == st["good"])
        if (st["booted"] != st["good"] or new["filesystem_uuid"] != want["root_uuid"]
                or release(lab, node) != want["version"]):
            raise CheckFailed(f"{node} after the upgrade: {st}")
        if rec is None or rec["state"] != "upgraded":
            raise CheckFailed(f"{node}'s record: {rec}")
    return {"fault_at": fault_at, "upgrade_s": round(seconds, 1),
            "own_reboot_s": round(back_s, 1), "steps": steps(output),
            "targets": {t: target_on(lab, t) for t in TARGETS},
            "version": want["version"]}


def scenario(action: Callable[[Lab, Path], dict[str, Any]], image: Path) -> Scenario:
    """``action`` on ``image`` as a scenario for iscsiha_lab.faults.run."""
    return lambda lab, _initiator: action(lab, image)
