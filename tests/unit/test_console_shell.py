"""The console shell itself: one-shot exit codes, ls, status, secrets, help, completion."""

from __future__ import annotations

import inspect
import tomllib
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest

from iscsiha.commands.targets import ClusterStatus, Fencing, TargetStatus, VolumeStatus
from iscsiha.console.console import main
from iscsiha.errors import IscsihaError
from iscsiha.executors.drbd import ProcDevice
from iscsiha.views import format_reports, status_lines
from tests.unit.console_fakes import SEEN_INITIATOR, FakeBackend, Harness, running_status

SECRETS = ("bmc-a-secret", "bmc-b-secret", "disc0very-Secret", "hv-Secret-0001",
           "san-Secret-0001", "backup-Secret-1")


@pytest.fixture
def h(tmp_path: Path) -> Harness:
    return Harness(tmp_path)


def node(h: Harness, path: str) -> Any:
    return h.shell.root.get_node(path)


# -- one-shot mode ------------------------------------------------------------------------

def run_main(h: Harness, *words: str) -> int:
    return main(["--backups", str(h.tmp / "backup"), *words], backend=h.backend,
                preferences_dir=str(h.tmp / "prefs"))


def test_one_shot_exit_codes(h: Harness, capsys: pytest.CaptureFixture[str]) -> None:
    assert run_main(h, "/volumes", "create", "name=scratch", "size=1G") == 0
    assert "scratch" in tomllib.loads(h.desired.read_text())["volumes"][-1]["name"]
    assert "created volume scratch" in capsys.readouterr().out
    assert run_main(h, "/volumes", "create", "name=other", "size=1X") == 1
    assert "bad-size" in capsys.readouterr().err
    assert run_main(h, "/volumes", "explode") == 2
    assert run_main(h, "/nosuch", "ls") == 2
    assert run_main(h, "--no-such-option") == 2
    assert len(h.backend.applied) == 1


def test_one_shot_ls(h: Harness, capsys: pytest.CaptureFixture[str]) -> None:
    assert run_main(h, "ls", "/volumes") == 0
    out = capsys.readouterr().out
    assert "o- volumes" in out and "vmstore" in out and "o- targets" not in out


# -- the error boundary -------------------------------------------------------------------

def test_the_error_boundary_prints_the_clis_report_text(h: Harness) -> None:
    h.backend.status_error = IscsihaError.single(
        "command-failed", "crm_mon", "exit 102", "a running cluster", "cannot reach Pacemaker")
    assert h.run("status") == 1
    assert h.err.getvalue() == format_reports(h.backend.status_error.reports) + "\n"
    assert h.run("ls") == 0  # the shell goes on
    assert "cluster status unknown" in h.out.getvalue()


# -- ls and status ------------------------------------------------------------------------

def test_ls_shows_health_from_the_cluster_status(h: Harness) -> None:
    h.backend.cluster = ClusterStatus(
        nodes=(("san-a", True), ("san-b", False)),
        targets=(TargetStatus("vm", "iqn.2026-11.com.example:san.vm", ("san-a",), "san-a",
                              "manual", False),),
        volumes=(VolumeStatus("vmstore", (("san-a", "Promoted"),)),))
    h.shell.sync()
    assert node(h, "/nodes/san-a").summary()[1] is True
    assert node(h, "/nodes/san-b").summary() == (
        "OFFLINE; link0 10.10.0.12, link1 10.11.0.12, repl 10.20.0.12, storage 10.30.0.12",
        False)
    assert node(h, "/cluster").summary() == (
        "san, tiebreaker 10.0.0.5, 1/2 nodes online, no DC yet", False)
    assert node(h, "/targets/vm").summary() == (
        "2 LUNs, preferred san-a, on san-a, not fully started", False)
    assert node(h, "/targets/backup").summary() == (
        "1 LUN, preferred san-b, not in the cluster", False)
    assert node(h, "/volumes/vmstore").summary() == (
        "100G, target vm LUN 0, Promoted on san-a", False)
    assert h.run("ls") == 0
    assert "OFFLINE" in h.out.getvalue() and "not fully started" in h.out.getvalue()


def test_ls_when_all_runs_as_wanted(h: Harness) -> None:
    assert node(h, "/targets/vm").summary() == ("2 LUNs, preferred san-a, on san-a", True)
    assert node(h, "/volumes/db").summary() == (
        "20G, target vm LUN 1, Promoted on san-a, Unpromoted on san-b", True)
    h.backend.cluster = ClusterStatus(
        running_status().nodes,
        (TargetStatus("vm", "iqn.2026-11.com.example:san.vm", (), "san-a", "manual", False),),
        ())
    h.shell.sync()
    assert node(h, "/targets/vm").summary() == ("2 LUNs, preferred san-a, stopped", False)


def test_ls_shows_quorum_fencing_resync_and_sessions(h: Harness) -> None:
    running = running_status()
    syncing = ProcDevice("SyncSource", "Primary", "Secondary", "UpToDate", "Inconsistent",
                         34816, 25.0, 46080, 83)
    h.backend.cluster = replace(
        running, quorate=True,
        fencing=Fencing(True, (("fence-san-a", "san-b"), ("fence-san-b", "san-a"))),
        targets=(replace(running.targets[0], sessions=("iqn.1993-08.org.debian:01:hv1",)),
                 running.targets[1]),
        volumes=(replace(running.volumes[0], drbd=syncing), *running.volumes[1:]))
    h.shell.sync()
    assert node(h, "/cluster").summary() == (
        "san, tiebreaker 10.0.0.5, 2/2 nodes online, quorate, fencing ready", True)
    assert node(h, "/targets/vm").summary() == (
        "2 LUNs, preferred san-a, on san-a, 1 session (iqn.1993-08.org.debian:01:hv1)", True)
    assert node(h, "/volumes/vmstore").summary() == (
        "100G, target vm LUN 0, Promoted on san-a, Unpromoted on san-b; SyncSource, "
        "UpToDate/Inconsistent, synced 25.0%, 1:23 left", False)
    h.backend.cluster = replace(h.backend.cluster, fencing=Fencing(True, (("fence-san-a", None),)))
    h.shell.sync()
    assert node(h, "/cluster").summary() == (
        "san, tiebreaker 10.0.0.5, 2/2 nodes online, quorate, fencing NOT READY", False)


def test_shell_hands_the_terminal_to_a_root_shell(h: Harness) -> None:
    assert h.run("shell") == 0
    assert h.backend.shells == 1
    assert "`exit` returns to the console" in h.out.getvalue()


def test_status_prints_what_iscsiha_status_prints(h: Harness) -> None:
    assert h.run("status") == 0
    assert h.out.getvalue().splitlines() == status_lines(running_status())
    assert h.out.getvalue().splitlines()[0] == "node    san-a                    online"


def test_a_missing_desired_file_still_lets_the_admin_restore(h: Harness) -> None:
    saved = h.tmp / "saved.toml"
    saved.write_text(h.original)
    h.desired.unlink()
    assert h.run("ls") == 0
    assert "desired state unreadable" in h.out.getvalue()
    assert h.run("/volumes create name=x size=1G") == 1
    assert "unreadable-file" in h.err.getvalue()
    assert h.run(f"restoreconfig {saved} confirm=yes") == 0
    assert h.desired.read_text() == h.original
    assert h.backups.list() == []  # there was nothing to keep
    assert h.run("ls /volumes") == 0 and "vmstore" in h.out.getvalue()


# -- secrets ------------------------------------------------------------------------------

def test_secrets_never_appear_in_ls_or_get(h: Harness) -> None:
    shown = []
    for cmdline in ("ls", "/targets/vm/auth get auth", "/targets/backup/auth get auth secret",
                    "/cluster/discovery_auth get auth", "/nodes/san-a get node",
                    "/targets/vm/auth ls", "/targets/vm/auth set auth user=hv2"):
        assert h.run(cmdline) == 0, h.err.getvalue()
        shown.append(h.out.getvalue() + h.err.getvalue())
    text = "\n".join(shown)
    assert "<set, 14 characters>" in text and "<set, 16 characters>" in text
    assert "user=hypervisors" in text
    for secret in SECRETS:
        assert secret not in text


def test_configshell_keeps_no_log_file(h: Harness) -> None:
    h.secrets.append("Fresh-Secret-1")
    assert h.run("/targets/vm/auth set auth secret=-") == 0
    assert h.shell.prefs["logfile"] is None
    assert not any("Fresh-Secret-1" in p.read_text(errors="replace")
                   for p in (h.tmp / "prefs").iterdir() if p.is_file())


# -- help ---------------------------------------------------------------------------------

def console_commands(h: Harness) -> list[tuple[str, str, list[str]]]:
    """(path, command, its parameters) for each command the console itself defines."""
    found = []
    pending: list[Any] = [h.shell.root]
    while pending:
        here = pending.pop()
        pending.extend(here.children)
        for command in here.list_commands():
            method = here.get_command_method(command)
            if method.__module__.startswith("iscsiha.console."):
                params = list(inspect.signature(method).parameters)
                found.append((here.path, command, params))
    return found


def test_every_console_command_has_help_with_parameters_and_an_example(h: Harness) -> None:
    commands = console_commands(h)
    assert {c for _, c, _ in commands} >= {"create", "delete", "resize", "move", "status",
                                           "saveconfig", "restoreconfig", "set"}
    for path, command, params in commands:
        assert h.run(f"{path} help {command}") == 0
        text = h.out.getvalue()
        assert "EXAMPLE" in text and "SEE ALSO" in text, (path, command)
        if params:
            assert "PARAMETERS" in text, (path, command)
        for param in params:
            if param != "parameter":
                assert f"\n{param}\n" in text, (path, command, param)


# -- completion ---------------------------------------------------------------------------

def test_completion_of_names(h: Harness) -> None:
    volumes = node(h, "/volumes")
    assert volumes.ui_complete_delete({}, "", "name") == ["backup", "db", "vmstore"]
    assert volumes.ui_complete_delete({}, "d", "name") == ["db "]
    assert node(h, "/targets").ui_complete_delete({}, "", "name") == ["backup", "vm"]
    assert node(h, "/targets/vm").ui_complete_move({}, "", "node") == ["san-a", "san-b"]
    assert node(h, "/targets/vm/luns").ui_complete_delete({}, "", "lun") == ["lun0", "lun1"]


def test_completion_offers_only_volumes_no_target_exports(h: Harness) -> None:
    assert h.run("/volumes create name=spare size=1G") == 0
    assert node(h, "/targets/vm/luns").ui_complete_create({}, "", "volume") == ["spare "]


def test_completion_of_sizes(h: Harness) -> None:
    volumes = node(h, "/volumes")
    assert volumes.ui_complete_create({}, "", "size") == ["100G", "100M", "10G", "1G", "1T"]
    assert volumes.ui_complete_create({}, "25", "size") == ["25G", "25M", "25T"]
    assert node(h, "/volumes/db").ui_complete_resize({}, "40G", "size") == ["40G "]


def test_completion_of_initiators_from_acls_and_the_cluster(h: Harness) -> None:
    acls = node(h, "/targets/backup/acls")
    assert acls.ui_complete_create({}, "iqn.199", "wwn") == [
        "iqn.1993-08.org.debian:01:hv1", SEEN_INITIATOR, "iqn.1998-01.com.vmware:esx1-4f2a"]
    # Those already allowed here are not offered again.
    assert "iqn.1991-05.com.microsoft:backup1.example.com" not in acls.ui_complete_create(
        {}, "", "wwn")
    assert node(h, "/targets/vm/acls").ui_complete_delete({}, "iqn.1998", "wwn") == [
        "iqn.1998-01.com.vmware:esx1-4f2a "]


def test_completion_of_initiators_survives_a_cluster_that_is_down(h: Harness) -> None:
    class Down(FakeBackend):
        def seen_initiators(self) -> list[str]:
            raise IscsihaError.single("command-failed", "cibadmin", 1, "a running cluster")

    h.state.backend = Down(h.desired)
    assert SEEN_INITIATOR not in node(h, "/targets/vm/acls").ui_complete_create({}, "", "wwn")


def test_completion_of_free_storage_addresses(h: Harness) -> None:
    targets = node(h, "/targets")
    offered = targets.ui_complete_create({}, "10.30.0.1", "portal")
    assert "10.30.0.1" in offered and "10.30.0.13" in offered
    # Node addresses and the existing portals are taken.
    assert not {"10.30.0.11", "10.30.0.12", "10.30.0.100", "10.30.0.101"} & set(offered)
    assert node(h, "/targets/vm/portals").ui_complete_create({}, "10.30.0.10", "address")[:2] \
        == ["10.30.0.10", "10.30.0.102"]
    assert targets.ui_complete_create({}, "10.10.", "portal") == []


def test_completion_of_the_other_create_target_arguments(h: Harness) -> None:
    targets = node(h, "/targets")
    assert targets.ui_complete_create({}, "", "preferred_node") == ["san-a", "san-b"]
    assert targets.ui_complete_create({}, "a", "failback") == ["auto "]
    assert targets.ui_complete_create({"name": "web"}, "", "iqn") == [
        "iqn.2026-11.com.example:san.web "]


def test_completion_of_set_values(h: Harness) -> None:
    auth = node(h, "/targets/vm/auth")
    assert auth.ui_complete_set({"group": "auth"}, "", "mode") == [
        "none", "chap", "mutual-chap"]
    assert node(h, "/targets/vm").ui_complete_set({"group": "target"}, "san-", "preferred_node") \
        == ["san-a", "san-b"]


def test_completion_of_backups_for_restoreconfig(h: Harness) -> None:
    assert h.run("saveconfig") == 0
    assert h.run("saveconfig") == 0
    root = node(h, "/")
    assert root.ui_complete_restoreconfig({}, "", "file") == [str(p) for p in h.backups.list()]
    assert len(h.backups.list()) == 2



def test_completion_through_configshell_s_own_dispatch(h: Harness) -> None:
    """The ui_complete_ methods fit what configshell passes them for keyword values."""
    assert h.shell._dispatch_completion("/volumes", "create", [], {"name": "x"}, "size=7",
                                        "kparam") == ["size=7G", "size=7M", "size=7T"]
    assert h.shell._dispatch_completion("/targets/vm", "move", [], {}, "node=san-b",
                                        "kparam") == ["node=san-b "]


def test_a_hand_edited_file_with_mistakes_is_still_shown(h: Harness) -> None:
    broken = h.original.replace('initiators = ["iqn.1991-05.com.microsoft:backup1.example.com"]',
                                'initiators = ["iqn.1991-05.com.microsoft:b", '
                                '"iqn.1991-05.com.microsoft:b"]')
    broken = broken.replace('luns = [{ lun = 0, volume = "backup" }]',
                            'luns = [{ lun = "zero", volume = "backup" }]')
    assert broken != h.original
    h.desired.write_text(broken)
    assert h.run("ls /targets/backup") == 0
    assert "iqn.1991-05.com.microsoft:b" in h.out.getvalue()
    # Any change reports every problem in the file, and changes nothing.
    assert h.run("/volumes create name=x size=1G") == 1
    assert "duplicate-initiator-name" in h.err.getvalue()
    assert "targets[1].luns[0].lun = 'zero'" in h.err.getvalue()
    assert h.desired.read_text() == broken and not h.backend.applied


def test_the_root_shows_the_health_verdict_status_gives_with_its_reasons(
        h: Harness) -> None:
    h.backend.cluster = replace(running_status(), quorate=True, fencing=Fencing(
        True, (("fence-san-a", "san-b"), ("fence-san-b", "san-a")), frozenset()))
    h.shell.sync()
    assert node(h, "/").summary() == ("cluster san, HEALTHY", True)
    h.backend.cluster = replace(h.backend.cluster, nodes=(("san-a", True), ("san-b", False)))
    h.shell.sync()
    assert node(h, "/").summary() == ("cluster san, DEGRADED; node san-b is offline", False)
    h.backend.cluster = replace(h.backend.cluster, quorate=False)
    h.shell.sync()
    text, healthy = node(h, "/").summary()
    assert text.startswith("cluster san, NOT-SERVING; this box's side has no quorum")
    assert healthy is False
    h.backend.status_error = IscsihaError.single("no-cluster", "crm_mon", None, "x")
    h.shell.sync()
    assert node(h, "/").summary() == (
        "cluster san, UNKNOWN: the cluster could not be asked", None)
    assert h.run("ls /") == 0 and "UNKNOWN" in h.out.getvalue()
