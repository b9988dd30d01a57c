"""The console's changes: what reaches the desired file and the backend, and what does not."""

from __future__ import annotations

import copy
import stat
import tomllib
from pathlib import Path
from typing import Any

import pytest

from iscsiha.commands.config import validate
from iscsiha.console.edits import tables
from iscsiha.errors import IscsihaError, Report
from iscsiha.model.toml_dump import dumps
from iscsiha.views import format_reports
from tests.unit.console_fakes import Harness


@pytest.fixture
def h(tmp_path: Path) -> Harness:
    return Harness(tmp_path)


def desired(h: Harness) -> dict[str, Any]:
    return tomllib.loads(h.desired.read_text())


def table(data: dict[str, Any], key: str, name: str) -> dict[str, Any]:
    return next(t for t in tables(data, key) if t["name"] == name)


def refused_text(edited: dict[str, Any]) -> str:
    """What the library says about ``edited``: what the console must print."""
    with pytest.raises(IscsihaError) as caught:
        validate(dumps(edited), "desired state")
    return format_reports(caught.value.reports)


def start_with_spare_volume(h: Harness) -> None:
    """A volume no target exports, so it can be deleted."""
    assert h.run("/volumes create name=spare size=1G") == 0
    h.backend.applied.clear()
    h.backend.saved.clear()
    h.original = h.desired.read_text()


# -- volumes ------------------------------------------------------------------------------

def test_create_volume_applies_then_saves_with_mode_0600(h: Harness) -> None:
    assert h.run("/volumes create name=scratch size=100G volume_group=fast") == 0
    data = desired(h)
    assert table(data, "volumes", "scratch") == {"name": "scratch", "size": "100G",
                                                 "volume_group": "fast"}
    [applied] = h.backend.applied
    scratch = applied.config.volume("scratch")
    assert (scratch.size, scratch.volume_group) == (100 * 1024**3, "fast")
    assert applied.confirmed_deletes == frozenset()
    assert h.backend.saved == [applied.text] == [h.desired.read_text()]
    assert stat.S_IMODE(h.desired.stat().st_mode) == 0o600
    assert "created volume scratch" in h.out.getvalue()
    # The state before the change is kept.
    [backup] = h.backups.list()
    assert backup.read_text() == h.original


def test_bad_size_prints_the_librarys_reports_and_changes_nothing(h: Harness) -> None:
    assert h.run("/volumes create name=scratch size=100GB") == 1
    edited = tomllib.loads(h.original)
    edited["volumes"].append({"name": "scratch", "size": "100GB"})
    assert h.err.getvalue().rstrip("\n") == refused_text(edited)
    assert "'100GB'" in h.err.getvalue() and "powers of 1024" in h.err.getvalue()
    assert h.unchanged()
    assert h.backups.list() == []


def test_duplicate_volume_name_is_refused_naming_the_existing_ones(h: Harness) -> None:
    assert h.run("/volumes create name=db size=1G") == 1
    err = h.err.getvalue()
    assert "volume = 'db'" in err and "vmstore, db, backup" in err
    assert h.unchanged()


def test_unknown_volume_is_refused_with_the_known_ones(h: Harness) -> None:
    assert h.run("/volumes delete nosuch confirm=yes") == 1
    assert "volume = 'nosuch'" in h.err.getvalue()
    assert "allowed: vmstore, db, backup" in h.err.getvalue()
    assert h.unchanged()


def test_delete_volume_asks_and_passes_the_name_as_a_confirmed_delete(h: Harness) -> None:
    start_with_spare_volume(h)
    h.answers.append(True)
    assert h.run("/volumes delete spare") == 0
    assert h.questions == ["Delete volume spare and its data on both boxes?"]
    [applied] = h.backend.applied
    assert applied.confirmed_deletes == frozenset({"spare"})
    assert "spare" not in [v["name"] for v in desired(h)["volumes"]]


def test_refusing_the_question_changes_nothing(h: Harness) -> None:
    start_with_spare_volume(h)
    h.answers.append(False)
    assert h.run("/volumes delete spare") == 1
    assert "not-confirmed" in h.err.getvalue()
    assert h.unchanged()


def test_confirm_yes_does_not_ask(h: Harness) -> None:
    start_with_spare_volume(h)
    assert h.run("/volumes delete name=spare confirm=yes") == 0
    assert h.questions == []
    assert h.backend.applied[0].confirmed_deletes == frozenset({"spare"})


def test_an_exported_volume_is_refused_before_any_question(h: Harness) -> None:
    assert h.run("/volumes delete db") == 1
    assert h.questions == []
    assert "target vm LUN 1" in h.err.getvalue()
    assert h.unchanged()


def test_resize_grows_and_refuses_to_shrink(h: Harness) -> None:
    assert h.run("/volumes/db resize 40G") == 0
    assert table(desired(h), "volumes", "db")["size"] == "40G"
    assert h.backend.applied[-1].config.volume("db").size == 40 * 1024**3
    applied = len(h.backend.applied)
    assert h.run("/volumes/db resize size=10G") == 1
    assert "volume-shrink" in h.err.getvalue() and "at least the current 40G" in h.err.getvalue()
    assert len(h.backend.applied) == applied
    assert table(desired(h), "volumes", "db")["size"] == "40G"


def test_a_failed_apply_saves_nothing(h: Harness) -> None:
    h.backend.apply_error = IscsihaError([Report("no-space", "volume_group", "san-a:data",
                                                 "at most 1 bytes more", "needs 2 bytes")])
    assert h.run("/volumes create name=scratch size=1G") == 1
    assert h.err.getvalue().rstrip("\n") == format_reports(h.backend.apply_error.reports)
    assert h.unchanged()
    assert h.backups.list() == []


def test_a_usage_error_is_exit_code_2_and_changes_nothing(h: Harness) -> None:
    assert h.run("/volumes create name=scratch") == 2
    assert "size" in h.err.getvalue()
    assert h.run("/volumes frobnicate") == 2
    assert h.unchanged()


# -- targets ------------------------------------------------------------------------------

def test_create_target_follows_the_existing_iqns(h: Harness) -> None:
    assert h.run("/volumes create name=web size=1G") == 0
    assert h.run("/targets create name=web portal=10.30.0.102 preferred_node=san-b "
                 "volume=web initiator=iqn.1993-08.org.debian:01:web1 failback=auto") == 0
    web = table(desired(h), "targets", "web")
    assert web == {"name": "web", "iqn": "iqn.2026-11.com.example:san.web",
                   "portals": ["10.30.0.102"], "preferred_node": "san-b", "failback": "auto",
                   "initiators": ["iqn.1993-08.org.debian:01:web1"],
                   "luns": [{"lun": 0, "volume": "web"}]}
    target = next(t for t in h.backend.applied[-1].config.targets if t.name == "web")
    assert target.preferred_node == "san-b"


def test_a_target_without_initiators_is_refused_by_validation(h: Harness) -> None:
    assert h.run("/volumes create name=web size=1G") == 0
    before = h.desired.read_text()
    applied = len(h.backend.applied)
    assert h.run("/targets create name=web portal=10.30.0.102 preferred_node=san-a "
                 "volume=web") == 1
    assert "no-initiators" in h.err.getvalue()
    assert (h.desired.read_text(), len(h.backend.applied)) == (before, applied)


def test_a_portal_on_a_node_address_is_refused(h: Harness) -> None:
    assert h.run("/targets/vm/portals create 10.30.0.11") == 1
    assert "portal-is-node-address" in h.err.getvalue()
    assert h.unchanged()


def test_delete_target_asks_and_the_shell_leaves_the_deleted_node(h: Harness) -> None:
    assert h.run("cd /targets/backup/luns") == 0
    h.answers.append(True)
    assert h.run("/targets delete backup") == 0
    assert [t["name"] for t in desired(h)["targets"]] == ["vm"]
    assert h.run("pwd") == 0
    assert h.out.getvalue().strip() == "/targets"


def test_luns_acls_and_portals(h: Harness) -> None:
    assert h.run("/volumes create name=extra size=1G") == 0
    assert h.run("/targets/vm/luns create volume=extra") == 0
    assert h.run("/targets/vm/acls create iqn.1993-08.org.debian:01:abc") == 0
    assert h.run("/targets/vm/portals create 10.30.0.110:3261") == 0
    vm = table(desired(h), "targets", "vm")
    assert vm["luns"][-1] == {"lun": 2, "volume": "extra"}
    assert vm["initiators"][-1] == "iqn.1993-08.org.debian:01:abc"
    assert vm["portals"] == ["10.30.0.100", "10.30.0.110:3261"]
    assert h.run("/targets/vm/luns delete lun2 confirm=yes") == 0
    assert h.run("/targets/vm/acls delete iqn.1993-08.org.debian:01:abc") == 0
    assert h.run("/targets/vm/portals delete 10.30.0.110:3261") == 0
    assert h.desired.read_text() == h.backend.saved[-1]
    assert table(desired(h), "targets", "vm") == table(tomllib.loads(h.original), "targets", "vm")


def test_a_bad_initiator_name_is_refused(h: Harness) -> None:
    assert h.run("/targets/vm/acls create iqn.1993-08.org.Debian:01:abc") == 1
    assert "upper-case" in h.err.getvalue()
    assert h.unchanged()


def test_deleting_a_lun_asks_and_a_no_keeps_it(h: Harness) -> None:
    assert h.run("/targets/vm/luns delete 1") == 1
    assert h.questions == ["Delete LUN 1 of target vm? Initiators lose that disk."]
    assert h.unchanged()


def test_set_target_settings_in_one_change(h: Harness) -> None:
    assert h.run("/targets/vm set target failback=auto preferred_node=san-b") == 0
    vm = table(desired(h), "targets", "vm")
    assert (vm["failback"], vm["preferred_node"]) == ("auto", "san-b")
    assert len(h.backend.applied) == 1
    assert h.run("/targets/vm set target preferred_node=san-x") == 1
    assert "targets[0].preferred_node = 'san-x'" in h.err.getvalue()
    assert "allowed: san-a, san-b" in h.err.getvalue()


def test_move_calls_the_backend_and_changes_no_desired_state(h: Harness) -> None:
    assert h.run("/targets/vm move node=san-b") == 0
    assert h.backend.moves == [("vm", "san-b", 300.0)]
    assert "target vm runs on san-b (2.5 s)" in h.out.getvalue()
    assert h.run("/targets/vm move san-b timeout=soon") == 1
    assert "timeout = 'soon'" in h.err.getvalue()
    assert len(h.backend.moves) == 1
    assert h.unchanged()


def test_standby_and_unstandby_call_the_backend_and_change_no_desired_state(
        h: Harness) -> None:
    assert h.run("/nodes/san-a standby") == 0
    assert h.run("/nodes/san-a unstandby timeout=60") == 0
    assert h.backend.standbys == [("san-a", True, 300.0), ("san-a", False, 60.0)]
    assert h.run("/nodes/san-a standby timeout=inf") == 1
    assert "timeout = 'inf'" in h.err.getvalue()
    assert len(h.backend.standbys) == 2
    assert h.unchanged()


# -- CHAP ---------------------------------------------------------------------------------

def test_set_auth_switches_mode_and_drops_what_it_no_longer_uses(h: Harness) -> None:
    h.secrets.append("New-Secret-01")
    assert h.run("/targets/vm/auth set auth mode=chap user=hv secret=-") == 0
    assert table(desired(h), "targets", "vm")["auth"] == {
        "mode": "chap", "user": "hv", "secret": "New-Secret-01"}
    assert "New-Secret-01" not in h.out.getvalue()
    assert "secret=<set, 13 characters>" in h.out.getvalue()
    assert h.run("/targets/vm/auth set auth mode=none") == 0
    assert table(desired(h), "targets", "vm")["auth"] == {"mode": "none"}


def test_a_short_secret_is_refused_without_being_shown(h: Harness) -> None:
    h.secrets.append("short1")
    assert h.run("/targets/vm/auth set auth secret=-") == 1
    err = h.err.getvalue()
    assert "short1" not in err
    assert "<secret, 6 characters>" in err and "12 to 16" in err
    assert h.unchanged()


def test_an_empty_secret_is_asked_for(h: Harness) -> None:
    h.secrets.append("Typed-Secret-1")
    assert h.run("/cluster/discovery_auth set auth secret=") == 0
    assert desired(h)["discovery_auth"]["secret"] == "Typed-Secret-1"


def test_a_setting_the_mode_does_not_use_is_refused(h: Harness) -> None:
    assert h.run("/targets/backup/auth set auth mutual_user=san") == 1
    assert "unused-setting" in h.err.getvalue()
    assert h.unchanged()


# -- backups, saveconfig, restoreconfig ---------------------------------------------------

def test_backups_rotate_to_the_last_ten(h: Harness) -> None:
    states = []
    for i in range(12):
        states.append(h.desired.read_text())
        assert h.run(f"/volumes create name=v{i} size=1G") == 0
    backups = h.backups.list()
    assert len(backups) == 10
    assert [b.read_text() for b in backups] == states[2:]
    assert all(stat.S_IMODE(b.stat().st_mode) == 0o600 for b in backups)


def test_saveconfig_makes_a_backup_or_a_copy(h: Harness, tmp_path: Path) -> None:
    assert h.run("saveconfig") == 0
    [backup] = h.backups.list()
    assert backup.read_text() == h.original
    copy_path = tmp_path / "copy.toml"
    assert h.run(f"saveconfig {copy_path}") == 0
    assert copy_path.read_text() == h.original
    assert stat.S_IMODE(copy_path.stat().st_mode) == 0o600
    assert h.unchanged()


def test_restoreconfig_asks_naming_the_volumes_it_deletes(h: Harness) -> None:
    assert h.run("saveconfig") == 0
    [before] = h.backups.list()
    assert h.run("/volumes create name=v1 size=1G") == 0
    assert h.run(f"restoreconfig {before}") == 1
    assert h.questions == [f"Replace the desired state with {before} and apply it, deleting "
                           "volume v1 and their data on both boxes?"]
    h.answers.append(True)
    assert h.run(f"restoreconfig {before}") == 0
    assert h.desired.read_text() == h.original
    assert h.backend.applied[-1].confirmed_deletes == frozenset({"v1"})


def test_restoreconfig_of_an_invalid_file_is_refused_before_asking(h: Harness,
                                                                   tmp_path: Path) -> None:
    bad = tomllib.loads(h.original)
    bad["volumes"][0]["size"] = "lots"
    path = tmp_path / "bad.toml"
    path.write_text(dumps(copy.deepcopy(bad)))
    assert h.run(f"restoreconfig {path} confirm=yes") == 1
    assert "volumes[0].size = 'lots'" in h.err.getvalue()
    assert h.questions == []
    assert h.unchanged()


# -- the admin's comments ---------------------------------------------------------------------

def commented(h: Harness) -> str:
    """The example with more comments of each kind: inline, between tables, in an array."""
    text = (h.original
            .replace('name = "db"\nsize = "20G"\n',
                     'name = "db"\nsize = "20G"            # grows with the database\n')
            .replace('\n[[volumes]]\nname = "backup"',
                     '\n# The backup volume: the big one.\n[[volumes]]\nname = "backup"')
            .replace('  { lun = 1, volume = "db" },\n',
                     '  { lun = 1, volume = "db" },  # the database, LUN 1 since 2026\n')
            .replace('initiators = ["iqn.1993-08.org.debian:01:hv1", '
                     '"iqn.1998-01.com.vmware:esx1-4f2a"]',
                     'initiators = ["iqn.1993-08.org.debian:01:hv1", '
                     '"iqn.1998-01.com.vmware:esx1-4f2a"]  # the hypervisors'))
    assert text.count("#") == h.original.count("#") + 4  # every replacement matched
    return text


def comments(text: str) -> list[str]:
    return [line[line.index("#"):] for line in text.splitlines() if "#" in line]


def test_console_changes_keep_the_admin_s_comments_and_layout(h: Harness) -> None:
    h.desired.write_text(commented(h))
    h.original = h.desired.read_text()
    expected = tomllib.loads(h.original)
    h.secrets.append("Typed-Secret-1")
    for line in ("/volumes create name=scratch size=1G", "/volumes/db resize size=30G",
                 "/targets/vm/acls create iqn.1993-08.org.debian:01:abc",
                 "/targets/vm/luns create volume=scratch",
                 "/targets/vm set target failback=auto",
                 "/targets/backup/auth set auth secret=-"):
        assert h.run(line) == 0, (line, h.err.getvalue())
    expected["volumes"].append({"name": "scratch", "size": "1G"})
    table(expected, "volumes", "db")["size"] = "30G"
    vm = table(expected, "targets", "vm")
    vm["initiators"].append("iqn.1993-08.org.debian:01:abc")
    vm["luns"].append({"lun": 2, "volume": "scratch"})
    vm["failback"] = "auto"
    table(expected, "targets", "backup")["auth"]["secret"] = "Typed-Secret-1"
    text = h.desired.read_text()
    assert tomllib.loads(text) == expected
    assert comments(text) == comments(h.original)  # all of them, in their order
    assert len(comments(text)) == 18
    # Lines no change touched are as the admin wrote them, blank lines included.
    assert text.startswith(h.original[:h.original.index("[[targets]]")]
                           .replace('size = "20G"', 'size = "30G"'))
    assert stat.S_IMODE(h.desired.stat().st_mode) == 0o600
    assert h.backups.list()[0].read_text() == h.original  # the first change's backup


def test_a_deleted_object_takes_only_its_own_comments(h: Harness) -> None:
    h.desired.write_text(commented(h))
    h.original = h.desired.read_text()
    assert h.run("/targets/vm/luns delete 1 confirm=yes") == 0
    text = h.desired.read_text()
    assert comments(text) == [c for c in comments(h.original)
                              if c != "# the database, LUN 1 since 2026"]
    expected = tomllib.loads(h.original)
    table(expected, "targets", "vm")["luns"].pop(1)
    assert tomllib.loads(text) == expected
