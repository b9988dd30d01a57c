"""`iscsiha upgrade status`: the two root slots, which is booted, which is good, the trial
boot armed or how the last one ended, and what each slot holds."""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Literal

from iscsiha.commands.upgrade_env import UpgradeEnv
from iscsiha.errors import IscsihaError
from iscsiha.model.bootenv import SLOTS, BootEnv, Slot, partition_name
from iscsiha.model.root_image import Release
from iscsiha.views import format_report

TrialState = Literal["none", "armed", "on-trial", "failed"]


def trial_state(env: BootEnv, booted: Slot | None) -> TrialState:
    """none; armed (the next boot tries it); on-trial (booted, not marked good yet);
    failed (tried, never marked good: GRUB went back to the good slot)."""
    if env.trial is None:
        return "none"
    if env.tries > 0:
        return "armed"
    return "on-trial" if booted == env.trial else "failed"


@dataclass(frozen=True)
class SlotStatus:
    slot: Slot
    partition: str
    device: str
    size: int
    booted: bool
    good: bool
    boot_uuid: str | None  # the UUID GRUB looks for (boot environment)
    filesystem_uuid: str | None  # the UUID the slot's superblock has; None: no ext4
    version: str | None
    commit: str | None
    problem: str | None  # why the release file could not be read


@dataclass(frozen=True)
class UpgradeStatus:
    disk: str
    booted: Slot | None
    good: Slot
    trial: Slot | None
    tries: int
    trial_state: TrialState
    slots: tuple[SlotStatus, ...]

    def as_dict(self) -> dict[str, object]:
        return asdict(self)


def status(env: UpgradeEnv) -> UpgradeStatus:
    current = env.boot_env.read()
    slots = []
    for slot in SLOTS:
        part = env.layout.slots[slot]
        fs = env.filesystem(slot)
        release: Release | None = None
        problem = None if fs else "no ext4 filesystem (empty, or damaged)"
        if fs is not None:
            try:
                release = env.release(slot)
            except IscsihaError as exc:
                problem = format_report(exc.reports[0]).splitlines()[0]
        slots.append(SlotStatus(
            slot, partition_name(slot), part.path, part.size, env.booted == slot,
            current.good == slot, current.uuid(slot), fs.uuid if fs else None,
            release.version if release else None, release.commit if release else None, problem))
    return UpgradeStatus(env.layout.disk, env.booted, current.good, current.trial,
                         current.tries, trial_state(current, env.booted), tuple(slots))


def status_lines(st: UpgradeStatus) -> list[str]:
    booted = f"booted from slot {st.booted}" if st.booted else "not the disk this box runs from"
    lines = [f"disk    {st.disk} ({booted})"]
    for s in st.slots:
        marks = [m for m, on in (("GOOD", s.good), ("BOOTED", s.booted)) if on]
        what = (f"iscsiha {s.version} (commit {s.commit})" if s.version
                else f"unreadable: {s.problem}")
        lines.append(f"slot {s.slot}  {s.partition} {s.device}  {', '.join(marks) or '-'}  "
                     f"{what}")
        lines.append(f"        filesystem {s.filesystem_uuid or 'none'}, GRUB looks for "
                     f"{s.boot_uuid or 'nothing'}")
    lines.append("trial   " + {
        "none": "none armed",
        "armed": f"slot {st.trial} armed: the next boot tries it once ({st.tries} try left)",
        "on-trial": f"running slot {st.trial} on trial: not marked good yet "
                    "(iscsiha-boot-good.service marks it once the box is healthy)",
        "failed": f"the trial of slot {st.trial} failed: it was booted and never marked "
                  f"good, so GRUB went back to slot {st.good}",
    }[st.trial_state])
    return lines
