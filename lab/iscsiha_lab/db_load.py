"""The filesystem + database workload (db_workload.py), driven from the host: an ext4 on
LUN 1 of alpha mounted on the initiator, the workload running beside the block verifier
during a fault, and the filesystem and database checked after it."""

from __future__ import annotations

import json
import threading
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from iscsiha.errors import IscsihaError
from iscsiha_lab.db_workload import MOUNT_OPTIONS
from iscsiha_lab.initiator import Initiator, iqn

SCRIPT = (Path(__file__).resolve().parent / "db_workload.py").read_text()
# The block verifier keeps LUN 0 of alpha and beta to itself; the database gets a volume
# of its own, on the target the scenarios fail over.
VOLUME, SIZE_MIB, TARGET, LUN = "alphadb", 64, "alpha", 1
MOUNT = "/mnt/db"
STATE = "/root/db-workload.state"  # on the initiator's own root: outside the LUN under test
STOP_FILE = "/tmp/db-workload.stop"
RUN_SECONDS = 900  # the workload's own bound; a scenario stops it long before


def device(initiator: Initiator) -> str:
    """The database LUN's device: its multipath map where there is one."""
    found = initiator.lun_device(iqn(TARGET), LUN)
    if found is None:
        raise IscsihaError.single("lun-missing", "initiator disks",
                                  sorted(initiator.disks(iqn(TARGET))),
                                  f"LUN {LUN} of {TARGET} attached", "the database's LUN")
    return found


def prepare(initiator: Initiator) -> None:
    """A new ext4 on the database's LUN, mounted, with no workload state: once, after
    login. Initialised in full now, so no background writes land during a fault."""
    disk = device(initiator)
    release(initiator)
    initiator.run("mkfs.ext4", "-F", "-q", "-L", "iscsiha-db", "-E",
                  "lazy_itable_init=0,lazy_journal_init=0", disk, timeout=300)
    initiator.run("mkdir", "-p", MOUNT)
    initiator.run("mount", "-o", MOUNT_OPTIONS, disk, MOUNT)
    initiator.run("rm", "-f", STATE, STOP_FILE)


def release(initiator: Initiator) -> None:
    """Unmounted, before its LUN goes away (logout) or is made anew."""
    initiator.try_run("umount", MOUNT)


def _script(initiator: Initiator, argv: list[str], timeout: float) -> dict[str, Any]:
    """The script's JSON line; {"failed": why} when it gave none."""
    try:
        result = initiator.lab.exec(initiator.name, ["python3", "-c", SCRIPT, *argv],
                                    timeout=timeout)
    except IscsihaError as exc:
        return {"failed": f"db_workload {argv[0]}: {exc}"}
    lines = result.out.strip().splitlines()
    try:
        data = json.loads(lines[-1]) if lines else None
    except ValueError:
        data = None
    if not isinstance(data, dict):
        return {"failed": f"db_workload {argv[0]} exited {result.returncode} without a "
                          f"report: {(result.out + result.err)[-1000:]}"}
    return data


@dataclass
class Workload:
    """The database workload on the initiator, running until stopped, then checked."""

    initiator: Initiator
    seconds: int = RUN_SECONDS
    result: dict[str, Any] = field(default_factory=dict)
    _thread: threading.Thread | None = None

    def start(self) -> None:
        self.initiator.run("rm", "-f", STOP_FILE)
        argv = ["run", "--mount", MOUNT, "--state", STATE, "--seconds", str(self.seconds),
                "--stop-file", STOP_FILE]
        self._thread = threading.Thread(target=lambda: self.result.update(
            _script(self.initiator, argv, self.seconds + 120)), daemon=True)
        self._thread.start()

    def stop(self) -> dict[str, Any]:
        """Stop the run, then check: the run's figures and the check's, in one dict."""
        self.initiator.try_run("touch", STOP_FILE)
        assert self._thread is not None
        self._thread.join(timeout=300)
        run = dict(self.result) or {"failed": "db_workload run returned nothing"}
        # The check's count of committed rows is read from the state file; the run's too.
        return {**run, **check(self.initiator)}


def check(initiator: Initiator) -> dict[str, Any]:
    """Unmount, e2fsck, mount, and verify the database: the check's figures, or
    {"check_failed": why}."""
    try:
        disk = device(initiator)
    except IscsihaError as exc:
        return {"check_failed": str(exc)}
    checked = _script(initiator, ["check", "--mount", MOUNT, "--state", STATE,
                                  "--device", disk], timeout=600)
    return {"check_failed": checked["failed"]} if "failed" in checked else checked


def problems(db: dict[str, Any]) -> list[str]:
    """What is wrong with a workload's figures: empty when every committed transaction is
    there, the filesystem checks clean and nothing failed."""
    found = [f"{key}: {db[key]}" for key in ("failed", "check_failed") if key in db]
    if found:
        return found
    if db.get("errors"):  # a check alone has no run, and no errors of one
        found.append(f"{db['errors']} errors: {db.get('error_text')}")
    if not db.get("fsck_clean"):
        found.append(f"e2fsck -fn not clean: {db.get('fsck_output', '')}")
    if db.get("mount_error"):
        found.append(f"mount after the check: {db['mount_error']}")
    if db["integrity"] != "ok":
        found.append(f"integrity_check: {db['integrity']}")
    if db["missing"] or db["bad_checksums"]:
        found.append(f"{db['missing']} committed transactions missing (first "
                     f"{db['missing_first']}), {db['bad_checksums']} with a bad checksum")
    if not db["total_ok"]:
        found.append("the running total disagrees with the rows: a torn transaction")
    if "commits" in db and db["commits"] < 10:  # a run's figure; a check alone has none
        found.append(f"only {db['commits']} transactions committed")
    return found
