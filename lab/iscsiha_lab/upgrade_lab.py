"""The pair's rolling upgrade in the lab (`iscsiha upgrade pair`, docs/upgrade.md).

The next release is a real build: image/build from the same source with a new
release number (``--version``) and SOURCE_DATE_EPOCH one second later, so its root
filesystem has a new UUID. Its lab root (the appliance root plus the UML kernel's
modules) is what the boxes stage: the lab boots each appliance from a GPT boot disk
through a stand-in for GRUB's A/B choice (iscsiha_lab.boot_loader).

One scenario, run under the verifier by iscsiha_lab.faults.run: the upgrade of the
pair where the second box's new root does not come up healthy (the lab masks the
self-check on its trial boot's kernel command line): it rolls back by itself, the
pair runs two releases; the upgrade run again finishes it.
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
from iscsiha.errors import IscsihaError
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


def next_for(repo: Path) -> Path:
    """next_image for the lab's image (ISCSIHA_LAB_IMAGE, else image/out's) into
    ISCSIHA_LAB_NEXT_DIR, else image/out/next."""
    current = Path(os.environ.get("ISCSIHA_LAB_IMAGE") or repo / "image/out" / IMAGE)
    out = Path(os.environ.get("ISCSIHA_LAB_NEXT_DIR") or repo / "image/out/next")
    return next_image(repo, current, out)


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


def _upgrade(lab: Lab, here: str, path: str) -> tuple[str, float]:
    """`iscsiha upgrade pair` on ``here``: its output; it must exit 0."""
    started = time.monotonic()
    result = lab.exec(here, ["iscsiha", "upgrade", "pair", path], timeout=UPGRADE_TIMEOUT)
    seconds = time.monotonic() - started
    output = result.out + result.err
    print(f"iscsiha upgrade pair on {here}, exit {result.returncode} in {seconds:.0f} s:\n"
          f"{output}")
    if result.returncode != 0:
        raise CheckFailed(f"`iscsiha upgrade pair` on {here} failed (exit {result.returncode})")
    return output, seconds


def _settled(lab: Lab, node: str) -> dict[str, Any]:
    """The node's record once its resume service has run (it rebooted: poll)."""
    found: dict[str, Any] = {}

    def check() -> bool:
        try:
            rec = record(lab, node)
        except (IscsihaError, ValueError):  # rebooting: the channel is down, or cut short
            return False
        if rec is None or rec["state"] == "staged":
            return False
        found.update(rec)
        return True
    wait_for(f"{node} back from its reboot with its part of the upgrade settled", check,
             timeout=BACK_TIMEOUT)
    if not found["left_standby"]:
        raise CheckFailed(f"{node} did not leave standby: {found['note']}")
    return found


def _on(lab: Lab, node: str, version: str, root_uuid: str | None = None) -> dict[str, Any]:
    st = slots(lab, node)
    good = next(s for s in st["slots"] if s["slot"] == st["good"])
    if st["booted"] != st["good"] or release(lab, node) != version or (
            root_uuid is not None and good["filesystem_uuid"] != root_uuid):
        raise CheckFailed(f"{node} does not run iscsiha {version} from its good slot: {st}")
    return st


def upgrade_with_a_failed_trial(lab: Lab, image: Path, here: str = "san-a") -> dict[str, Any]:
    """The rolling upgrade, run on ``here``, whose own new root does not come up healthy:
    the other box is upgraded; this box boots its new root once, is not marked good,
    reboots into its old root by itself, records why and leaves standby. The pair then
    runs two releases, healthy. Run again, the upgrade skips the other box and
    finishes this one."""
    peer = other(here)
    want = manifest_of(image)
    old = release(lab, here)
    path = offer(lab, here, image)
    lab.trial_words(here, UNHEALTHY_TRIAL)
    fault_at = time.time()
    first, first_s = _upgrade(lab, here, path)
    started = time.monotonic()
    fell_back = _settled(lab, here)
    rollback_s = time.monotonic() - started
    if fell_back["state"] != "rolled-back" or "did not come up healthy" not in fell_back["note"]:
        raise CheckFailed(f"{here}'s record after its unhealthy trial: {fell_back}")
    if _on(lab, here, old)["trial_state"] != "failed":
        raise CheckFailed(f"{here}'s status does not show its trial failed")
    _on(lab, peer, want["version"], want["root_uuid"])
    wait_healthy(lab, "the pair healthy on two releases")
    shown = lab.exec(here, ["iscsiha", "upgrade", "status"], timeout=120).check().out
    if "pair upgrade: rolled-back" not in shown:
        raise CheckFailed(f"`iscsiha upgrade status` on {here} does not report it:\n{shown}")
    second, second_s = _upgrade(lab, here, path)
    if f"{peer} already runs this root" not in second:
        raise CheckFailed(f"the second run did not skip {peer}")
    started = time.monotonic()
    done = _settled(lab, here)
    back_s = time.monotonic() - started
    if done["state"] != "upgraded":
        raise CheckFailed(f"{here}'s record after the second run: {done}")
    wait_healthy(lab, "the pair healthy after the rolling upgrade")
    for node in (here, peer):
        _on(lab, node, want["version"], want["root_uuid"])
    return {"fault_at": fault_at, "first_run_s": round(first_s, 1),
            "rollback_s": round(rollback_s, 1), "second_run_s": round(second_s, 1),
            "own_reboot_s": round(back_s, 1), "steps": steps(first) + steps(second),
            "rolled_back_note": fell_back["note"], "version": want["version"],
            "targets": {t: target_on(lab, t) for t in TARGETS}}


def scenario(action: Callable[[Lab, Path], dict[str, Any]], image: Path) -> Scenario:
    """``action`` on ``image`` as a scenario for iscsiha_lab.faults.run."""
    return lambda lab, _initiator: action(lab, image)


def main() -> int:
    """`python3 -m iscsiha_lab.upgrade_lab`: the next release built ahead (tools/test
    does it in the background, so test_upgrade_pair finds it ready)."""
    print(next_for(Path(__file__).resolve().parents[2]))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
