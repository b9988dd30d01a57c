"""A scenario fails on what the database workload found (errors, an unclean filesystem,
a failed integrity check, missing or altered or torn transactions, none committed), and
the power cut's resync is measured per volume."""

from __future__ import annotations

from typing import Any

import pytest
from iscsiha_lab import db_load, faults, pair
from iscsiha_lab.pair import CheckFailed


def _db(**changes: Any) -> dict[str, Any]:
    good = {"commits": 4000, "errors": 0, "error_text": [], "pause_s": 21.5,
            "committed": 9000, "floor": 1, "fsck_clean": True, "integrity": "ok",
            "present": 9000, "missing": 0, "missing_first": [], "bad_checksums": 0,
            "beyond_committed": 0, "total_ok": True}
    return good | changes


def _result(**db: Any) -> dict[str, Any]:
    return {"writes": 5000, "errors": 0, "lost": 0, "unreadable": 0, "error_text": [],
            "db": _db(**db)}


def test_a_whole_workload_passes() -> None:
    assert db_load.problems(_db()) == []
    faults.verify(_result())


@pytest.mark.parametrize(("changes", "said"), [
    ({"errors": 2, "error_text": ["disk I/O error"]}, "2 errors: ['disk I/O error']"),
    ({"fsck_clean": False, "fsck_output": "Inode 12 has EXTENTS_FL"}, "Inode 12"),
    ({"integrity": "*** in database main ***"}, "integrity_check: *** in database main"),
    ({"missing": 3, "missing_first": [5, 6, 7]}, "3 committed transactions missing (first "
                                                 "[5, 6, 7])"),
    ({"bad_checksums": 1}, "1 with a bad checksum"),
    ({"total_ok": False}, "a torn transaction"),
    ({"commits": 3}, "only 3 transactions committed"),
    ({"mount_error": "wrong fs type"}, "mount after the check: wrong fs type"),
])
def test_each_fault_of_the_workload_fails_the_scenario_and_is_named(
        changes: dict[str, Any], said: str) -> None:
    with pytest.raises(CheckFailed, match="database workload") as failed:
        faults.verify(_result(**changes))
    assert said in str(failed.value)


def test_a_workload_that_gave_no_report_fails_with_why() -> None:
    with pytest.raises(CheckFailed) as failed:
        faults.verify({"writes": 5000, "errors": 0, "lost": 0, "error_text": [],
                       "db": {"failed": "db_workload run returned nothing",
                              "check_failed": "LUN 1 of alpha not attached"}})
    assert "returned nothing" in str(failed.value) and "LUN 1" in str(failed.value)


def test_block_losses_and_database_losses_are_both_told() -> None:
    result = _result(missing=1, missing_first=[9])
    result["lost"] = 2
    with pytest.raises(CheckFailed) as failed:
        faults.verify(result)
    assert "2 acknowledged writes lost" in str(failed.value)
    assert "1 committed transactions missing" in str(failed.value)


def test_the_database_has_its_own_volume_on_a_second_lun_of_alpha(
        monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(pair, "cluster_data", lambda lab: {})
    data = pair.failover_desired(object(), "iqn.x")  # type: ignore[arg-type]
    assert {"name": "alphadb", "size": "64M"} in data["volumes"]
    luns = {t["name"]: t["luns"] for t in data["targets"]}
    assert luns["alpha"] == [{"lun": 0, "volume": "alpha"}, {"lun": 1, "volume": "alphadb"}]
    assert luns["beta"] == [{"lun": 0, "volume": "beta"}]


def test_resync_is_summed_per_volume_from_the_kernel_log(
        monkeypatch: pytest.MonkeyPatch) -> None:
    log = ("Dec 07 01:00:00 san-b kernel: drbd alpha/0 drbd1 san-a: Began resync as "
           "SyncSource (will sync 4096 KB [1024 bits set]).\n"
           "Dec 07 01:00:01 san-b kernel: drbd alpha/1 drbd3 san-a: Began resync as "
           "SyncSource (will sync 12288 KB [3072 bits set]).\n"
           "Dec 07 01:00:01 san-b kernel: drbd alpha/65534 drbd2 san-a: Began resync as "
           "SyncSource (will sync 16 KB [4 bits set]).\n"
           "Dec 07 01:20:00 san-b kernel: drbd alpha/0 drbd1 san-a: Began resync as "
           "SyncSource (will sync 512 KB [128 bits set]).\n"
           "Dec 07 01:20:01 san-b kernel: Began resync as SyncSource (will sync 8 KB [2]).\n")
    monkeypatch.setattr(pair, "kernel_log", lambda lab, box, text: log)
    assert pair.resync_kib(object(), "san-b") == {  # type: ignore[arg-type]
        "alpha": 4608, "alphadb": 12288, "alpha/65534": 16, "?": 8}
