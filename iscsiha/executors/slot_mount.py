"""A root slot mounted for a moment: read-write, on a private folder under /run, always
unmounted again (``iscsiha upgrade stage`` carries the box's state into it).

The folder is made fresh (0700, a name of its own) for each mount, so nothing else
uses it and a leftover from an earlier run is never reused. The slot's filesystem is
flushed (``sync -f``) before the unmount, so an error of the flush is seen here.
"""

from __future__ import annotations

import contextlib
import os
import tempfile
from collections.abc import Iterator

from iscsiha.errors import IscsihaError, Report
from iscsiha.executors.runner import Runner

MOUNT, UMOUNT, SYNC = "/usr/bin/mount", "/usr/bin/umount", "/usr/bin/sync"
RUN_DIR = "/run/iscsiha"
OPTIONS = "rw,nodev,nosuid,noexec,noatime"
TIMEOUT = 300.0  # a flush of what was written may take a while on a slow disk


class SlotMounts:
    def __init__(self, runner: Runner, run_dir: str = RUN_DIR) -> None:
        self.runner = runner
        self.run_dir = run_dir

    @contextlib.contextmanager
    def mounted(self, device: str) -> Iterator[str]:
        """``device``'s ext4 mounted read-write; the folder it is mounted on.

        Whatever happens inside, the slot is unmounted on the way out. An unmount
        that fails is reported, added to the error that ended the block if there
        was one (that error stays the first report).
        """
        os.makedirs(self.run_dir, mode=0o755, exist_ok=True)
        point = tempfile.mkdtemp(prefix="slot-", dir=self.run_dir)
        try:
            self.runner.run([MOUNT, "-t", "ext4", "-o", OPTIONS, "--", device, point],
                            timeout=TIMEOUT)
        except BaseException:
            os.rmdir(point)
            raise
        failure: BaseException | None = None
        try:
            yield point
            self.runner.run([SYNC, "-f", point], timeout=TIMEOUT)
        except BaseException as exc:
            failure = exc
            raise
        finally:
            self._unmount(device, point, failure)

    def _unmount(self, device: str, point: str, failure: BaseException | None) -> None:
        done = self.runner.run([UMOUNT, "--", point], check=False, timeout=TIMEOUT)
        if done.ok:
            os.rmdir(point)
            return
        detail = (done.stderr.strip() or done.stdout.strip() or "no output").splitlines()[-1]
        report = Report("unmount-failed", "partition", device, f"unmounted from {point}",
                        f"umount exited with {done.returncode}: {detail}; unmount it by "
                        "hand before staging again")
        if isinstance(failure, IscsihaError):
            failure.reports = (*failure.reports, report)
        elif failure is None:
            raise IscsihaError([report])
