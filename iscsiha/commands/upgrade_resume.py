"""`iscsiha upgrade resume`: at boot, finish this box's part of a pair upgrade.

iscsiha-upgrade-resume.service runs it after iscsiha-boot-good.service. With no
record, or one already settled, it does nothing. Otherwise, once the box runs its
good slot (the trial marked good, or GRUB back on the old root), it records how the
part ended, waits for this box to be online in the cluster and takes it out of the
standby the upgrade put it in: its targets come back as their failback policy says.
"""

from __future__ import annotations

from collections.abc import Callable

from iscsiha.commands import upgrade_status
from iscsiha.commands.cluster_env import ClusterEnv
from iscsiha.commands.standby import standby
from iscsiha.commands.targets import status
from iscsiha.commands.upgrade_env import UpgradeEnv
from iscsiha.commands.upgrade_pair import first_line, poll
from iscsiha.commands.upgrade_steps import read_record
from iscsiha.errors import IscsihaError
from iscsiha.executors import files
from iscsiha.model import pair_upgrade
from iscsiha.model.pair_upgrade import Record

Progress = Callable[[str], None]


def resume(uenv: UpgradeEnv, cenv: ClusterEnv, node: str, timeout: float,
           progress: Progress) -> Record | None:
    """The record as settled now; None when there was nothing to settle yet."""
    record = read_record(uenv)
    if record is None or record.state != "staged":
        return None
    st = upgrade_status.status(uenv)
    if st.booted is None:
        raise IscsihaError.single("not-booted-disk", "disk", st.disk,
                                  "a box booted through the A/B logic (iscsiha.slot=)")
    done = pair_upgrade.outcome(record, st.booted, st.good, st.trial_state)
    if done is None:
        progress(f"slot {st.booted} runs on trial: iscsiha-boot-good.service marks it good "
                 "or reboots into the good slot; the upgrade resumes after that")
        return None
    progress(done.note)
    try:
        _wait_online(cenv, node, timeout, progress)
        standby(cenv, node, False, timeout, progress)
    except IscsihaError as exc:
        failed = Record(done.state, done.slot, done.release, done.from_version, False,
                        f"{done.note}; still in standby: {first_line(exc)}")
        _save(uenv, failed)
        raise
    settled = Record(done.state, done.slot, done.release, done.from_version, True,
                     f"{done.note}; out of standby")
    _save(uenv, settled)
    return settled


def _save(uenv: UpgradeEnv, record: Record) -> None:
    files.write_atomic(uenv.record_path, pair_upgrade.record_json(record).encode(), 0o600)


def _wait_online(cenv: ClusterEnv, node: str, timeout: float, progress: Progress) -> None:
    """Until Pacemaker shows ``node`` online with quorum (the standby attribute can then be
    changed and acted on)."""
    def check() -> tuple[bool | None, str]:
        try:
            state = status(cenv.pacemaker)
        except IscsihaError as exc:
            return None, f"waiting for {node} to be online in the cluster ({first_line(exc)})"
        if (node, True) in state.nodes and state.quorate:
            return True, ""
        return None, f"waiting for {node} to be online in the cluster with quorum"
    poll(cenv.clock, check, timeout, progress, lambda why: IscsihaError.single(
        "not-online", "node", node, f"online in the cluster within {timeout:.0f} s", why))
