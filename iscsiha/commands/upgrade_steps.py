"""The node steps of the pair's rolling upgrade (protocol 2): the other box asks where
this box's part stands, sends it the new root, and reboots it.

stage-root's request line is followed on stdin by the image itself, in frames that
send a chunk of zeros as its length (iscsiha.protocol.frames); this box checks
the manifest the request carries as it would check a file's, writes the bytes
straight into its standby slot (no copy on the root filesystem, which has no room for
one), and arms the trial only if what arrived has the manifest's SHA-256 and reads
back the same.
"""

from __future__ import annotations

import sys
from collections.abc import Callable
from typing import BinaryIO

from iscsiha import __version__
from iscsiha.commands import upgrade_stage, upgrade_status
from iscsiha.commands.cluster_env import RunsCommands
from iscsiha.commands.upgrade_env import UpgradeEnv
from iscsiha.executors import files
from iscsiha.model import pair_upgrade
from iscsiha.model.bootenv import checked_uuid
from iscsiha.model.root_image import Manifest, Release
from iscsiha.protocol import frames
from iscsiha.protocol import messages as m

SYSTEMD_RUN = "/usr/bin/systemd-run"
SYSTEMCTL = "/usr/bin/systemctl"
REBOOT_DELAY = 3  # seconds: the reply gets back over SSH before sshd stops
REBOOT_UNIT = "iscsiha-upgrade-reboot"


def _quiet(message: str) -> None:
    print(f"iscsiha node: {message}", file=sys.stderr, flush=True)


def state(env: UpgradeEnv, read: Callable[[str], bytes | None] = files.read
          ) -> m.UpgradeState:
    # The other box polls this while it waits: the boot block and one superblock, not
    # each slot's release file (debugfs) as `upgrade status` reads them.
    current = env.boot_env.read()
    good_fs = env.filesystem(current.good)
    record = read_record(env, read)
    return m.UpgradeState(
        __version__, env.booted, current.good, good_fs.uuid if good_fs else None,
        upgrade_status.trial_state(current, env.booted),
        record.state if record else "none", record.release.version if record else None,
        record.left_standby if record else False, record.note if record else "")


def read_record(env: UpgradeEnv, read: Callable[[str], bytes | None] = files.read
                ) -> pair_upgrade.Record | None:
    data = read(env.record_path)
    if data is None:
        return None
    return pair_upgrade.parse_record(data.decode(errors="replace"), env.record_path)


def stage_root(env: UpgradeEnv, req: m.RootImage, stream: BinaryIO,
               progress: Callable[[str], None] = _quiet) -> m.StagedRoot:
    manifest = Manifest(Release(req.version, req.commit, checked_uuid(req.root_uuid, "root_uuid")),
                        req.size, req.sha256)
    staged = upgrade_stage.stage_stream(env, manifest, frames.decode(stream.read, req.size),
                                        progress, record_from=__version__)
    return m.StagedRoot(staged.slot, max(staged.seconds, 0.001))


def reboot(runner: RunsCommands) -> m.Nothing:
    """Reboot in a few seconds, from a transient timer: the reply is sent first."""
    runner.run([SYSTEMD_RUN, f"--on-active={REBOOT_DELAY}", f"--unit={REBOOT_UNIT}",
                "--description=iscsiha upgrade pair: reboot into the staged root",
                SYSTEMCTL, "reboot"])
    return m.Nothing()
