"""`iscsiha upgrade mark-good`: once a trial boot is healthy, make its slot the good one.

iscsiha-boot-good.service runs it after multi-user.target on every boot GRUB made
through the A/B logic. Healthy means (docs/upgrade.md):

- multi-user.target is active (the boot got there) and iscsiha-selfcheck.service is
  active (the LIO and DRBD modules load, the iscsiha CLI runs);
- none of the network, management and cluster services failed: systemd-networkd,
  iscsiha-firewall, ssh, corosync, corosync-qdevice, pacemaker, sbd (a service a
  fresh box does not run yet is inactive, not failed: that is healthy).

A trial that is not healthy is not marked; with ``--reboot-if-unhealthy`` the box
reboots at once, and GRUB, its tries used up, boots the good slot again.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Literal

from iscsiha.commands.upgrade_env import LOCK, UpgradeEnv
from iscsiha.errors import IscsihaError
from iscsiha.executors.locks import exclusive_or_refuse
from iscsiha.model import bootenv
from iscsiha.model.bootenv import Slot

MUST_BE_ACTIVE = ("multi-user.target", "iscsiha-selfcheck.service")
MUST_NOT_FAIL = ("systemd-networkd.service", "iscsiha-firewall.service", "ssh.service",
                 "corosync.service", "corosync-qdevice.service", "pacemaker.service",
                 "sbd.service")
Outcome = Literal["already-good", "marked-good", "unhealthy"]


def health_problems(states: Mapping[str, str]) -> list[str]:
    """What keeps the box from being healthy, given each unit's ActiveState."""
    problems = [f"{unit} is {states.get(unit, 'unknown')}, not active"
                for unit in MUST_BE_ACTIVE if states.get(unit) != "active"]
    problems += [f"{unit} failed" for unit in MUST_NOT_FAIL if states.get(unit) == "failed"]
    return problems


@dataclass(frozen=True)
class BootCheck:
    booted: Slot
    outcome: Outcome
    good: Slot  # the good slot afterwards
    problems: tuple[str, ...] = ()


def mark_good(env: UpgradeEnv, unit_state: Callable[[str], str]) -> BootCheck:
    booted = env.booted
    if booted is None:
        raise IscsihaError.single("not-booted-disk", "disk", env.layout.disk,
                                  "the disk this box booted from (no --disk)")
    with exclusive_or_refuse(LOCK, "upgrade command"):
        current = env.boot_env.read()
        if booted == current.good:
            return BootCheck(booted, "already-good", current.good)
        problems = health_problems({u: unit_state(u) for u in (*MUST_BE_ACTIVE, *MUST_NOT_FAIL)})
        if problems:
            return BootCheck(booted, "unhealthy", current.good, tuple(problems))
        new = bootenv.marked_good(current, booted)
        if new is not None:
            env.boot_env.write(new)
        return BootCheck(booted, "marked-good", booted)
