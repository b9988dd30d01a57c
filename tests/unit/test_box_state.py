"""Carrying a box's state into a new root: two real trees in tmp_path whose system users
have different ids, the copy's outcome read back from the new root."""

from __future__ import annotations

import json
import os
import stat
from pathlib import Path

import pytest

from iscsiha.alerts import config as alert_settings
from iscsiha.alerts import space
from iscsiha.commands import node_steps, tiebreaker, upgrade_carry, verify
from iscsiha.commands.upgrade_carry import carry
from iscsiha.errors import IscsihaError
from iscsiha.executors import networkd
from iscsiha.model import box_network
from iscsiha.model.box_state import CARRIED_RECORD, ENTRIES, Kind
from iscsiha.plan import corosync, drbd, peer_ssh
from tests.conftest import ROOT
from tests.unit.fake_roots import (
    DEBIAN_COROSYNC,
    NEW_PASSWD,
    OLD_TIME,
    cluster_box,
    folder,
    fresh_box,
    listing,
    need_root,
    new_root,
    put,
)


@pytest.fixture
def roots(tmp_path: Path) -> tuple[Path, Path]:
    need_root()
    return cluster_box(tmp_path / "old"), new_root(tmp_path / "new")


def carried(old: Path, new: Path) -> upgrade_carry.Carried:
    return carry(str(old), str(new), lambda line: None, now=lambda: 1_700_000_000.0)


def owner(path: Path) -> tuple[int, int, int]:
    st = os.lstat(path)
    return stat.S_IMODE(st.st_mode), st.st_uid, st.st_gid


def refused(old: Path, new: Path) -> IscsihaError:
    with pytest.raises(IscsihaError) as exc:
        carried(old, new)
    return exc.value


def test_files_and_folders_keep_mode_and_times_and_owners_are_mapped_by_name(
        roots: tuple[Path, Path]) -> None:
    old, new = roots
    carried(old, new)
    assert (new / "etc/iscsiha/desired.toml").read_text() == "[cluster]\nname = 'san'\n"
    assert owner(new / "etc/iscsiha/desired.toml") == (0o600, 0, 0)
    assert owner(new / "etc/iscsiha/ssh") == (0o700, 0, 0)
    # hacluster:haclient are 105:110 on the box and 107:113 in the new root.
    assert owner(new / "var/lib/pacemaker/cib/cib.xml") == (0o600, 107, 113)
    assert owner(new / "var/lib/pacemaker/cib") == (0o750, 107, 113)
    assert owner(new / "etc/iscsiha/alerts.json") == (0o640, 0, 113)
    assert owner(new / "home/admin/.ssh/authorized_keys") == (0o600, 1000, 1000)
    assert os.stat(new / "etc/iscsiha/ssh/id_ed25519").st_mtime == OLD_TIME
    for rel in ("etc/iscsiha/ssh", "var/lib/pacemaker/cib", "etc/iscsiha"):
        assert os.stat(new / rel).st_mtime_ns == os.stat(old / rel).st_mtime_ns, rel
    assert (new / "etc/machine-id").read_text() == "0123456789abcdef0123456789abcdef\n"
    assert (new / "etc/ssh/ssh_host_ed25519_key").read_text() == "PRIVATE\n"
    assert (new / "etc/corosync/corosync.conf").read_text().startswith(corosync.HEADER)
    assert (new / "etc/drbd.d/vm.res").read_text().startswith(drbd.HEADER)
    assert not [p for p in new.rglob(f"{upgrade_carry.TEMP_PREFIX}*")]


def test_what_the_new_release_ships_and_the_box_never_wrote_stays_the_new_releases(
        roots: tuple[Path, Path]) -> None:
    old, new = roots
    carried(old, new)
    assert (new / "etc/ssh/sshd_config").read_text() == "# the new release's\n"
    assert (new / "etc/drbd.d/global_common.conf").read_text() == "# the new release's\n"
    assert (new / "etc/iscsiha/data-disk").read_text() == "auto\n"  # the box has none
    assert not (new / "etc/systemd/system/multi-user.target.wants/ssh.service").is_symlink()


def test_admins_password_and_groups_are_merged_and_the_new_system_users_kept(
        roots: tuple[Path, Path]) -> None:
    old, new = roots
    result = carried(old, new)
    assert (new / "etc/passwd").read_text() == NEW_PASSWD
    shadow = (new / "etc/shadow").read_text().splitlines()
    assert "admin:$y$j9T$oldsalt$oldhash:19500:0:99999:7:::" in shadow
    assert "_newsvc:!:19900::::::" in shadow and len(shadow) == 4
    assert owner(new / "etc/shadow") == (0o640, 0, 42)
    group = (new / "etc/group").read_text().splitlines()
    assert "haclient:x:113:admin" in group and "sudo:x:27:admin" in group
    assert "_newsvc:x:110:" in group
    assert "haclient:!::admin" in (new / "etc/gshadow").read_text().splitlines()
    assert set(result.accounts) == {"/etc/shadow", "/etc/group", "/etc/gshadow"}


def test_a_symlink_is_carried_as_a_link_and_what_it_points_to_is_not(
        roots: tuple[Path, Path]) -> None:
    old, new = roots
    (old / "etc/iscsiha/peek").symlink_to("/etc/shadow")
    carried(old, new)
    assert os.readlink(new / "etc/iscsiha/peek") == "/etc/shadow"
    wants = new / "etc/systemd/system/multi-user.target.wants/pacemaker.service"
    assert os.readlink(wants) == "/usr/lib/systemd/system/pacemaker.service"
    # The folders the new root lacked are made as the box has them.
    made = os.lstat(new / "etc/systemd/system")
    assert made.st_mtime_ns == os.lstat(old / "etc/systemd/system").st_mtime_ns


def test_an_owner_the_new_root_lacks_is_refused_naming_file_and_owner(
        roots: tuple[Path, Path]) -> None:
    old, new = roots
    put(old, "etc/iscsiha/legacy.conf", "x\n", owner=(1200, 0))
    before = listing(new)
    error = refused(old, new)
    assert [(r.code, r.value) for r in error.reports] == [
        ("owner-missing", "/etc/iscsiha/legacy.conf")]
    assert "owner legacy" in error.reports[0].message
    assert listing(new) == before


def test_an_owner_without_a_name_on_the_box_is_refused(roots: tuple[Path, Path]) -> None:
    old, new = roots
    put(old, "var/lib/iscsiha/orphan", "x\n", owner=(4321, 0))
    error = refused(old, new)
    assert [(r.code, r.value) for r in error.reports] == [
        ("owner-unknown", "/var/lib/iscsiha/orphan")]
    assert "4321" in error.reports[0].message


def test_a_fifo_is_refused_and_nothing_is_written(roots: tuple[Path, Path]) -> None:
    old, new = roots
    os.mkfifo(old / "etc/iscsiha/pipe")
    before = listing(new)
    error = refused(old, new)
    assert [(r.code, r.value) for r in error.reports] == [("special-file", "/etc/iscsiha/pipe")]
    assert "fifo" in error.reports[0].message
    assert listing(new) == before


def test_a_root_without_the_release_file_is_not_an_iscsiha_root(
        roots: tuple[Path, Path]) -> None:
    old, new = roots
    (new / "usr/lib/iscsiha/release.json").unlink()
    before = listing(new)
    error = refused(old, new)
    assert error.reports[0].code == "not-an-iscsiha-root"
    assert listing(new) == before


def test_a_folder_of_the_new_root_that_is_a_symlink_is_never_written_through(
        roots: tuple[Path, Path], tmp_path: Path) -> None:
    old, new = roots
    outside = folder(tmp_path, "outside", 0o755)
    (new / "etc/iscsiha/data-disk").unlink()
    (new / "etc/iscsiha").rmdir()
    (new / "etc/iscsiha").symlink_to(outside)
    error = refused(old, new)
    assert {r.code for r in error.reports} == {"not-a-folder"}
    assert "/etc/iscsiha/desired.toml" in [r.value for r in error.reports]
    assert list(outside.iterdir()) == []


def test_a_fresh_box_carries_what_it_has_and_skips_the_cluster(tmp_path: Path) -> None:
    need_root()
    old, new = fresh_box(tmp_path / "old"), new_root(tmp_path / "new")
    result = carried(old, new)
    assert (new / "var/lib/iscsiha/provisioned").exists()
    assert (new / "etc/hostname").read_text() == "san-a\n"
    # Debian's example is no cluster: the new release's own example stays.
    assert (new / "etc/corosync/corosync.conf").read_text() == DEBIAN_COROSYNC + "# new release\n"
    assert list((new / "var/lib/pacemaker/cib").iterdir()) == []
    assert {"/var/lib/pacemaker/cib", "/etc/corosync/corosync.conf",
            "/etc/iscsiha"} <= set(result.absent)
    assert "/etc/corosync/corosync.conf" not in result.entries


def test_the_record_says_from_which_release_when_and_what(roots: tuple[Path, Path]) -> None:
    old, new = roots
    result = carried(old, new)
    record = json.loads((new / CARRIED_RECORD.lstrip("/")).read_text())
    assert record["from"]["version"] == "0.1.0" and record["to"]["version"] == "0.2.0"
    assert record["when"] == "2023-11-14T22:13:20Z"
    assert "/etc/iscsiha" in record["entries"] and "/var/lib/pacemaker/cib" in record["entries"]
    assert record["files"] == result.files
    files = [p for p in (old / "etc/iscsiha").rglob("*") if not p.is_dir()]
    assert result.files > len(files)
    assert result.bytes >= sum(p.stat().st_size for p in files)


def test_a_record_already_on_the_box_is_replaced_not_carried(
        roots: tuple[Path, Path]) -> None:
    old, new = roots
    put(old, CARRIED_RECORD.lstrip("/"), '{"to": {"version": "0.0.9"}}\n')
    carried(old, new)
    assert json.loads((new / CARRIED_RECORD.lstrip("/")).read_text())["to"]["version"] == "0.2.0"


def test_a_failure_while_writing_leaves_the_new_root_as_it_was(
        roots: tuple[Path, Path], monkeypatch: pytest.MonkeyPatch) -> None:
    old, new = roots
    before = listing(new)
    calls = []

    def fchmod_then_fail(fd: int, mode: int) -> None:
        calls.append(fd)
        if len(calls) == 5:
            raise OSError(28, "No space left on device")
        os.chmod(f"/proc/self/fd/{fd}", mode)

    monkeypatch.setattr(upgrade_carry.os, "fchmod", fchmod_then_fail)
    error = refused(old, new)
    monkeypatch.undo()
    assert error.reports[0].code == "carry-failed"
    assert "No space left on device: nothing was carried" in error.reports[0].message
    assert listing(new) == before


def test_every_path_the_product_writes_is_carried() -> None:
    # (audit_log.AUDIT_DIR is a test folder here: tests/unit/conftest.py moves it.)
    written = [peer_ssh.SSH_DIR, peer_ssh.KEY, node_steps.DESIRED_PATH, node_steps.SECRETS_DIR,
               alert_settings.PATH, space.STATE_PATH, space.POOL_STATE_PATH,
               verify.RECORD_PATH, networkd.TRIAL_PATH, box_network.PATH,
               "/var/log/iscsiha/audit.jsonl", corosync.PATH, drbd.AUTHKEY_PATH,
               drbd.resource_path("vm"), tiebreaker.NSSDB, tiebreaker.PEER_BUNDLE,
               "/var/lib/iscsiha/provisioned", "/var/lib/iscsiha/data-vg-created",
               "/etc/iscsiha/backup/desired.toml", "/etc/iscsiha/data-disk"]

    def covered(path: str) -> bool:
        return any(path == e.path or (e.kind is Kind.TREE and path.startswith(f"{e.path}/"))
                   or (e.kind is Kind.GLOB and os.path.dirname(path) == e.path)
                   for e in ENTRIES)
    assert [p for p in written if not covered(p)] == []


def test_the_docs_list_every_entry() -> None:
    text = (ROOT / "docs/upgrade.md").read_text()
    assert [e.path for e in ENTRIES if f"| `{e.path}" not in text] == []
