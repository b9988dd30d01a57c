"""The database workload's own logic, on a temporary directory instead of a LUN: numbered
transactions, the committed mark kept outside the database, and the check that finds
missing, altered or torn transactions (e2fsck and mount are the lab's part)."""

from __future__ import annotations

import json
import shutil
import sqlite3
import subprocess
from pathlib import Path

import pytest
from iscsiha_lab import db_workload as w

from lab_tests.conftest import skip_or_fail


@pytest.fixture
def mount(tmp_path: Path) -> Path:
    (tmp_path / "mnt").mkdir()
    return tmp_path / "mnt"


def _run(mount: Path, seconds: float = 0.3, **kw: float) -> dict[str, object]:
    return w.run(str(mount), str(mount.parent / "state"), seconds,
                 str(mount.parent / "stop"), **kw)  # type: ignore[arg-type]


def _check(mount: Path) -> dict[str, object]:
    return w.check(str(mount), str(mount.parent / "state"), device=None)


def _db(mount: Path) -> sqlite3.Connection:
    return sqlite3.connect(mount / w.DB_NAME, isolation_level=None)


def test_the_checksum_covers_the_number_and_the_payload() -> None:
    assert w.checksum(7, w.payload(7)) != w.checksum(8, w.payload(7))
    assert w.checksum(7, w.payload(7)) != w.checksum(7, w.payload(7) + "x")
    assert 64 <= len(w.payload(7)) < 192 and w.payload(7) == w.payload(7)


def test_every_committed_transaction_is_found_with_its_checksum(mount: Path) -> None:
    ran = _run(mount, interval=0.0)
    assert ran["errors"] == 0 and ran["commits"] == ran["committed"]
    assert isinstance(ran["commits"], int) and ran["commits"] > 10
    checked = _check(mount)
    assert checked["integrity"] == "ok" and checked["total_ok"] is True
    assert checked["committed"] == checked["present"] == ran["commits"]
    assert checked["missing"] == checked["bad_checksums"] == checked["beyond_committed"] == 0
    assert w.read_state(str(mount.parent / "state")) == (ran["commits"], 1)


def test_a_second_run_numbers_on_from_the_first(mount: Path) -> None:
    first = _run(mount, interval=0.0)
    second = _run(mount, interval=0.0)
    assert second["committed"] == first["commits"] + second["commits"]  # type: ignore[operator]
    assert _check(mount)["present"] == second["committed"]


def test_committed_rows_that_are_gone_are_counted_and_named(mount: Path) -> None:
    _run(mount, interval=0.0)
    with _db(mount) as db:
        db.execute("DELETE FROM tx WHERE n IN (3, 5)")
    checked = _check(mount)
    assert checked["missing"] == 2 and checked["missing_first"] == [3, 5]
    assert checked["total_ok"] is False  # the rows went without their total


def test_commits_recorded_but_not_in_the_database_are_missing(mount: Path) -> None:
    ran = _run(mount, interval=0.0)
    committed = ran["committed"]
    assert isinstance(committed, int)
    (mount.parent / "state").write_text(f"{committed + 4} 1\n")
    checked = _check(mount)
    assert checked["missing"] == 4
    assert checked["missing_first"] == list(range(committed + 1, committed + 5))


def test_an_altered_payload_is_a_bad_checksum(mount: Path) -> None:
    _run(mount, interval=0.0)
    with _db(mount) as db:
        db.execute("UPDATE tx SET payload = 'changed' WHERE n = 4")
    checked = _check(mount)
    assert checked["bad_checksums"] == 1 and checked["missing"] == 0


def test_a_row_without_its_total_update_is_a_torn_transaction(mount: Path) -> None:
    ran = _run(mount, interval=0.0)
    n = ran["committed"] + 1  # type: ignore[operator]
    with _db(mount) as db:
        db.execute("INSERT INTO tx VALUES (?, ?, ?)", (n, "p", w.checksum(n, "p")))
    checked = _check(mount)
    assert checked["total_ok"] is False and checked["beyond_committed"] == 1
    assert checked["missing"] == 0


def test_a_run_stops_at_the_stop_file(mount: Path) -> None:
    (mount.parent / "stop").touch()
    ran = _run(mount, seconds=30)
    assert ran["commits"] == 0 and ran["seconds"] < 5  # type: ignore[operator]


def test_the_time_limit_bounds_a_run_and_the_rate(mount: Path) -> None:
    ran = _run(mount, seconds=0.5)  # at most one commit per MIN_INTERVAL
    assert 0.5 <= ran["seconds"] < 2  # type: ignore[operator]
    assert 0 < ran["commits"] <= 0.5 / w.MIN_INTERVAL + 1  # type: ignore[operator]


def test_old_rows_are_dropped_and_the_check_starts_at_the_floor(mount: Path) -> None:
    _run(mount, interval=0.0, keep=10)
    ran = _run(mount, interval=0.0, keep=10)
    committed, floor = w.read_state(str(mount.parent / "state"))
    assert committed == ran["committed"] and floor > 1
    checked = _check(mount)
    assert checked["present"] == committed - floor + 1 and checked["missing"] == 0
    assert checked["total_ok"] is True
    with _db(mount) as db:
        assert db.execute("SELECT min(n) FROM tx").fetchone() == (floor,)


def test_a_database_that_cannot_be_opened_is_reported_as_errors(tmp_path: Path) -> None:
    ran = _run(tmp_path / "not-mounted", seconds=1.2)
    assert ran["commits"] == 0 and ran["errors"] >= 2  # type: ignore[operator]
    assert "not-mounted" in str(ran["error_text"])


def test_without_a_database_every_committed_row_is_missing(mount: Path) -> None:
    (mount.parent / "state").write_text("12 1\n")
    checked = _check(mount)
    assert checked["missing"] == 12 and "no database" in str(checked["integrity"])


def test_a_database_that_is_not_one_fails_its_integrity_check(mount: Path) -> None:
    (mount.parent / "state").write_text("3 1\n")
    (mount / w.DB_NAME).write_bytes(b"SQLite format 3\0" + b"\xff" * 4096)
    checked = _check(mount)
    assert checked["integrity"] != "ok" and checked["missing"] == 3


def test_main_prints_one_json_line_or_what_failed(mount: Path,
                                                  capsys: pytest.CaptureFixture[str]) -> None:
    state = str(mount.parent / "state")
    w.main(["run", "--mount", str(mount), "--state", state, "--seconds", "0.2"])
    report = json.loads(capsys.readouterr().out)
    assert report["commits"] > 0 and report["errors"] == 0
    (mount.parent / "state").write_text("twelve\n")
    with pytest.raises(SystemExit) as exit:
        w.main(["check", "--mount", str(mount), "--state", state])
    assert exit.value.code == 1
    assert "'twelve' is not 'COMMITTED FLOOR'" in json.loads(capsys.readouterr().out)["failed"]


def test_fsck_is_clean_on_a_new_filesystem_and_not_on_a_damaged_one(tmp_path: Path) -> None:
    if not shutil.which("mkfs.ext4") or not shutil.which("e2fsck"):
        skip_or_fail("e2fsprogs is not installed (apt-get install e2fsprogs)")
    image = tmp_path / "fs.img"
    subprocess.run(["mkfs.ext4", "-F", "-q", str(image), "8M"], check=True)
    # A mount point that does not exist: the host is never mounted on, only checked.
    clean = w.fsck(str(image), str(tmp_path / "absent"))
    assert clean["fsck_clean"] is True and "mount_error" in clean
    with image.open("r+b") as f:  # the superblock, 1 KiB in
        f.seek(1024)
        superblock = bytearray(f.read(1024))
        superblock[0x58:0x5C] = b"\xff\xff\xff\xff"  # s_first_ino: impossible
        f.seek(1024)
        f.write(superblock)
    damaged = w.fsck(str(image), str(tmp_path / "absent"))
    assert damaged["fsck_clean"] is False and damaged["fsck_output"]
