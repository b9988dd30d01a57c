"""systemd-networkd: our files in /etc/systemd/network, networkctl, and the trial record.

A change of this box's networks is a trial until the admin confirms it: before any
file changes, the files it replaces are kept in the trial record (on disk, so a
reboot inside the window puts them back: iscsiha-network-trial.service runs before
networkd), and a waiter puts them back at the deadline unless confirmed.
"""

from __future__ import annotations

import json
import os
import secrets
import time
from collections.abc import Mapping
from dataclasses import dataclass

from iscsiha.errors import IscsihaError
from iscsiha.executors import files
from iscsiha.executors.runner import Runner
from iscsiha.plan.networkd import DIRECTORY, PREFIX

TRIAL_PATH = "/var/lib/iscsiha/network/trial.json"
RELOAD_TIMEOUT = 60.0
NETWORKCTL = "/usr/bin/networkctl"


@dataclass(frozen=True)
class Trial:
    id: str
    deadline: float  # wall clock (time.time()): it must mean the same after a reboot
    previous: Mapping[str, str]  # file name -> content, the set before the trial

    def left(self) -> float:
        return max(0.0, self.deadline - time.time())


class Networkd:
    """``root`` prefixes every path (tests use a temporary folder)."""

    def __init__(self, runner: Runner, root: str = "/") -> None:
        self.runner = runner
        self.folder = os.path.join(root, DIRECTORY.lstrip("/"))
        self.trial_path = os.path.join(root, TRIAL_PATH.lstrip("/"))

    def live(self) -> dict[str, str]:
        """Our files now in the folder: name -> content."""
        try:
            entries = sorted(os.listdir(self.folder))
        except FileNotFoundError:
            return {}
        return {name: files.read_text(os.path.join(self.folder, name))
                for name in entries if _ours(name)}

    def trial(self) -> Trial | None:
        raw = files.read(self.trial_path)
        if raw is None:
            return None
        try:
            data = json.loads(raw)
            previous = data["previous"]
            if not (isinstance(data["id"], str) and isinstance(data["deadline"], int | float)
                    and isinstance(previous, dict)
                    and all(isinstance(k, str) and isinstance(v, str) and _ours(k)
                            for k, v in previous.items())):
                raise ValueError("unexpected fields")
        except (ValueError, KeyError, TypeError) as exc:
            raise IscsihaError.single(
                "bad-trial-record", "file", self.trial_path,
                "the record `iscsiha network apply` writes",
                f"cannot be read ({exc}); remove it to forget the trial") from exc
        return Trial(data["id"], float(data["deadline"]), previous)

    def begin(self, wanted: Mapping[str, str], within: float) -> Trial:
        """Record the trial, then switch to ``wanted`` (name -> content)."""
        if (pending := self.trial()) is not None:
            raise IscsihaError.single(
                "trial-pending", "network", "apply", "no change waiting for confirmation",
                f"the change {pending.id} waits {pending.left():.0f} s more: "
                "`confirm` or `revert` it first")
        trial = Trial(secrets.token_hex(4), time.time() + within, self.live())
        files.write_atomic(self.trial_path, json.dumps(
            {"id": trial.id, "deadline": trial.deadline, "previous": dict(trial.previous)},
            indent=1).encode(), 0o600)
        self._switch(wanted, trial.previous, apply=True)
        return trial

    def confirm(self) -> Trial:
        trial = self.trial()
        if trial is None:
            raise IscsihaError.single("no-trial", "network", "confirm",
                                      "a change waiting for confirmation", "none is waiting")
        files.remove(self.trial_path)
        return trial

    def revert(self, trial_id: str | None = None, *, apply: bool = True) -> Trial | None:
        """Put back the set before the pending trial (only trial ``trial_id``, when
        given); the trial reverted, or None. ``apply=False``: files only (at boot,
        before networkd runs)."""
        trial = self.trial()
        if trial is None or (trial_id is not None and trial.id != trial_id):
            return None
        self._switch(trial.previous, self.live(), apply=apply)
        files.remove(self.trial_path)
        return trial

    def _switch(self, wanted: Mapping[str, str], before: Mapping[str, str], *,
                apply: bool) -> None:
        for name, content in sorted(wanted.items()):
            if not _ours(name):
                raise IscsihaError.single("bad-file-name", "file", name,
                                          f"{PREFIX}NAME.network or .netdev")
            files.write_if_changed(os.path.join(self.folder, name), content.encode())
        for name in sorted(set(before) - set(wanted)):
            files.remove(os.path.join(self.folder, name))
        if not apply:
            return
        self.runner.run([NETWORKCTL, "reload"], timeout=RELOAD_TIMEOUT)
        present = set(os.listdir("/sys/class/net")) if os.path.isdir("/sys/class/net") else set()
        # A bond or VLAN that is no longer wanted stays in the kernel after a reload.
        gone = {_match(c, "Name") for n, c in before.items() if n.endswith(".netdev")} - {
            _match(c, "Name") for n, c in wanted.items() if n.endswith(".netdev")}
        for device in sorted(d for d in gone if d in present):
            self.runner.run([NETWORKCTL, "delete", device], timeout=RELOAD_TIMEOUT)
        touched = {_match(c, "Name") for c in (*wanted.values(), *before.values())}
        changed = sorted(d for d in touched if d in present and d not in gone)
        if changed:
            self.runner.run([NETWORKCTL, "reconfigure", *changed], timeout=RELOAD_TIMEOUT)


def _ours(name: str) -> bool:
    return (name.startswith(PREFIX) and name.endswith((".network", ".netdev"))
            and "/" not in name and name.isascii())


def _match(content: str, key: str) -> str:
    """The interface a file is for: [Match] Name= of a .network, [NetDev] Name= of a .netdev."""
    for line in content.splitlines():
        if line.startswith(f"{key}="):
            return line.split("=", 1)[1].strip()
    return ""


def wait_and_revert(networkd: Networkd, trial_id: str, poll: float = 1.0) -> Trial | None:
    """Until trial ``trial_id``'s deadline, then revert it unless it was confirmed."""
    while (trial := networkd.trial()) is not None and trial.id == trial_id:
        if trial.left() <= 0:
            return networkd.revert(trial_id)
        time.sleep(min(poll, trial.left()))
    return None
