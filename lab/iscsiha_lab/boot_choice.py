"""Which root slot a lab node boots: image/lib/grub-ab.cfg's choice, as a pure function.

UML cannot run GRUB, so before every boot of an appliance node the supervisor makes
the same choice GRUB makes on a box (boot_loader.py reads the disk, this decides):

1. the good slot is ``iscsiha_good``, anything but ``b`` counting as ``a``;
2. a slot armed with ``iscsiha_tries=1`` is wanted, but only once its try is used up
   and saved (tries 0 written to the ESP) *before* it boots; if that save fails, it
   is not tried;
3. the wanted slot, else the good one, is the first whose recorded UUID names a
   filesystem on the disk (GRUB: ``search --fs-uuid``);
4. if neither is found (the block unreadable, or no UUID matches), the root the disk
   was flashed with, as slot ``a``.

It lives in the lab, not the product: nothing in the product makes this choice, GRUB
does. tests/unit pin grub-ab.cfg's text; lab_tests/unit pin this function's cases.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, replace

from iscsiha.model.bootenv import BootEnv, Slot, partition_name

FLASHED_SLOT: Slot = "a"


@dataclass(frozen=True)
class BootChoice:
    """What the stand-in boots: a slot, the partition holding its root, and why."""

    slot: Slot
    partition: str  # GPT name of the partition whose filesystem is booted
    trial: bool  # this boot uses up the armed trial
    good: Slot
    line: str  # the one line logged for this choice

    @property
    def summary(self) -> str:
        return f"slot {self.slot} ({'trial' if self.trial else 'good'}, good {self.good})"


def choose(env: BootEnv | None, filesystems: Mapping[str, str], flashed_uuid: str,
           save: Callable[[BootEnv], bool]) -> BootChoice:
    """grub-ab.cfg's choice for the block ``env`` (None: unreadable, so no variables).

    ``filesystems`` maps each filesystem UUID on the disk to its partition's GPT
    name; ``save`` writes the block with its try used up and says whether it could.
    """
    good: Slot = env.good if env is not None else "a"
    want: Slot = good
    tried = False
    # The try is used up and saved before the trial boots; unsaved, it is not tried.
    if env is not None and env.tries == 1 and env.trial is not None \
            and save(replace(env, tries=0)):
        want, tried = env.trial, True
    uuids: dict[Slot, str | None] = {"a": env.uuid_a, "b": env.uuid_b} if env else {}
    for slot in (want, good):
        uuid = uuids.get(slot)
        if uuid and uuid in filesystems:
            trial = tried and slot == want
            return BootChoice(slot, filesystems[uuid], trial, good,
                              _line(slot, good, env, "trial" if trial else "good"))
    # As GRUB: the flashed root A, whether or not its UUID is found (GRUB would then fail
    # to load the kernel; the lab boots root-a, and its log says so).
    partition = filesystems.get(flashed_uuid, partition_name(FLASHED_SLOT))
    why = "no slot found" + ("" if flashed_uuid in filesystems
                             else f", and no filesystem {flashed_uuid}")
    return BootChoice(FLASHED_SLOT, partition, False, good,
                      _line(FLASHED_SLOT, good, env, f"{why}: the flashed root A"))


def _line(slot: Slot, good: Slot, env: BootEnv | None, how: str) -> str:
    trial = env.trial if env is not None and env.trial else "none"
    tries = env.tries if env is not None else "unset"
    return f"boot: slot {slot} ({how}, good {good}; block: trial {trial}, tries {tries})"
