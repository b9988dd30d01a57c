"""SCSI reservations kept with the target: LIO's APTPL files read back as hostile
input, and the store formatted only where nothing was ever written."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import pytest

from iscsiha.errors import IscsihaError
from iscsiha.executors.aptpl import registrations
from iscsiha.executors.lio import _attributes
from iscsiha.executors.reservations import MKFS, MOUNT, ReservationStore
from iscsiha.executors.runner import CommandResult

# As LIO 7.2 wrote it in the lab (sg_persist REGISTER then RESERVE type 5), NUL included.
WRITTEN = (b"PR_REG_START: 0\ninitiator_fabric=iSCSI\n"
           b"initiator_node=iqn.1993-08.org.debian:01:354ea5276586\n"
           b"initiator_sid=00023d000001\nsa_res_key=4369\nres_holder=1\nres_type=05\n"
           b"res_scope=00\nres_all_tg_pt=0\nmapped_lun=0\ntarget_fabric=iSCSI\n"
           b"target_node=iqn.2026-12.org.example:prtest\ntpgt=1\nport_rtpi=1\n"
           b"target_lun=0\nPR_REG_END: 0\n\0")


def test_a_registration_lio_wrote_is_one_line_for_res_aptpl_metadata() -> None:
    (line,) = registrations(WRITTEN, "f")
    assert line.startswith("initiator_fabric=iSCSI,initiator_node=iqn.1993-08.org.debian")
    assert ",sa_res_key=4369,res_holder=1,res_type=05," in line
    assert line.endswith(",target_lun=0") and "\n" not in line and "\0" not in line


def test_two_registrations_and_the_empty_file_lio_writes_after_a_clear() -> None:
    second = WRITTEN.replace(b"4369", b"8738").replace(b"res_holder=1\n", b"")
    assert len(registrations(WRITTEN.rstrip(b"\0") + second, "f")) == 2
    assert registrations(b"No Registrations or Reservations\0", "f") == []
    assert registrations(b"", "f") == []


@pytest.mark.parametrize("raw", [
    WRITTEN.replace(b"tpgt=1", b"tpgt=1,res_holder=1"),  # a comma smuggles a key in
    WRITTEN.replace(b"tpgt=1", b"dev=../../x"),  # a key LIO never writes
    WRITTEN.replace(b"PR_REG_END: 0\n", b""),  # torn at the end
    WRITTEN.replace(b"PR_REG_START: 0\n", b""),  # keys outside a registration
    b"PR_REG_START: 0\nPR_REG_END: 0\n",  # an empty registration
    WRITTEN.replace(b"iSCSI", "iSCSI\u00e9".encode()),
    b"x" * ((1 << 20) + 1),
])
def test_a_damaged_or_hostile_file_is_refused_naming_it(raw: bytes) -> None:
    with pytest.raises(IscsihaError) as caught:
        registrations(raw, "/run/pr/aptpl_x")
    (report,) = caught.value.reports
    assert report.code == "bad-reservations-file" and "/run/pr/aptpl_x" in str(report.value)


class Runner:
    def __init__(self, blkid: str) -> None:
        self.blkid = blkid
        self.calls: list[list[str]] = []

    def run(self, argv: Sequence[str], **_: Any) -> CommandResult:
        self.calls.append(list(argv))
        out = self.blkid if argv[0].endswith("blkid") else ""
        return CommandResult(tuple(argv), 0 if out else 2, out, "", 0.0)


def _store(tmp_path: Path, runner: Runner) -> ReservationStore:
    (tmp_path / "mounts").write_text("")
    return ReservationStore(runner, str(tmp_path / "run"), str(tmp_path / "mounts"))  # type: ignore[arg-type]


def test_a_never_used_volume_is_formatted_then_mounted_sync(tmp_path: Path) -> None:
    device = tmp_path / "drbd3"
    device.write_bytes(b"\0" * (2 << 20))
    runner = Runner("")
    where = _store(tmp_path, runner).mount(str(device))
    assert where == str(tmp_path / "run" / "drbd3")
    assert [c[0] for c in runner.calls[1:]] == [MKFS, MOUNT]
    assert "sync,dirsync" in runner.calls[-1][runner.calls[-1].index("-o") + 1]


def test_an_ext4_is_mounted_as_it_is(tmp_path: Path) -> None:
    runner = Runner("ext4\n")
    _store(tmp_path, runner).mount(str(tmp_path / "drbd3"))
    assert MKFS not in [c[0] for c in runner.calls]


@pytest.mark.parametrize("blkid,data", [("xfs\n", b""), ("", b"\0" * 4096 + b"data")])
def test_a_volume_holding_anything_else_is_never_formatted(
        tmp_path: Path, blkid: str, data: bytes) -> None:
    device = tmp_path / "drbd3"
    device.write_bytes(data)
    runner = Runner(blkid)
    with pytest.raises(IscsihaError, match="holds"):
        _store(tmp_path, runner).mount(str(device))
    assert MKFS not in [c[0] for c in runner.calls]


@pytest.mark.parametrize("unmap,discards", [("8192\n", 1), ("0\n", 0), ("garbage\n", 0)])
def test_vaai_attributes_are_set_and_unmap_only_where_the_device_discards(
        tmp_path: Path, unmap: str, discards: int) -> None:
    (tmp_path / "attrib").mkdir()
    (tmp_path / "attrib/max_unmap_lba_count").write_text(unmap)
    assert _attributes(str(tmp_path)) == {"emulate_caw": 1, "emulate_3pc": 1,
                                          "emulate_tpu": discards, "emulate_tpws": discards}
