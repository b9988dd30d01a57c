"""The CLI: exit codes, reports on stderr, and what plan prints."""

from __future__ import annotations

import argparse
import io
import json
import os
import re
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest

from iscsiha.cli.main import _parser, main
from tests.conftest import EXAMPLE, ROOT


def _write(tmp_path: Path, text: str, mode: int = 0o600) -> Path:
    path = tmp_path / "cluster.toml"
    path.write_text(text)
    os.chmod(path, mode)
    return path


def test_validate_accepts_the_example(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["validate", str(EXAMPLE)]) == 0
    out = capsys.readouterr().out
    assert "valid: cluster san, 3 volumes, 2 targets, 3 LUNs" in out


def test_validate_refuses_a_bad_config_naming_field_and_value(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    bad = _write(tmp_path, EXAMPLE.read_text().replace('size = "20G"', 'size = "20GB"'))
    assert main(["validate", str(bad)]) == 1
    err = capsys.readouterr().err
    assert "volumes[1].size = '20GB'" in err
    assert "powers of 1024" in err
    assert "1 problem found; nothing was applied." in err


def test_plan_prints_nothing_to_stdout_when_refused(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    bad = _write(tmp_path, EXAMPLE.read_text().replace('"san-b"\nfailback', '"san-x"\nfailback'))
    assert main(["plan", str(bad)]) == 1
    captured = capsys.readouterr()
    assert captured.out == ""
    assert "targets[1].preferred_node = 'san-x'" in captured.err


def test_missing_file_is_a_clear_error(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["validate", str(tmp_path / "nope.toml")]) == 1
    assert "nope.toml" in capsys.readouterr().err


def test_world_readable_secrets_give_a_warning_but_pass(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = _write(tmp_path, EXAMPLE.read_text(), mode=0o644)
    assert main(["validate", str(path)]) == 0
    assert "warning:" in capsys.readouterr().err
    os.chmod(path, 0o600)
    assert main(["validate", str(path)]) == 0
    assert "warning:" not in capsys.readouterr().err


def test_plan_prints_cib_and_every_node_file(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["plan", str(EXAMPLE)]) == 0
    out = capsys.readouterr().out
    assert out.startswith("# ---- CIB configuration ----\n<configuration>")
    for node in ("san-a", "san-b"):
        for target in ("vm", "backup"):  # one DRBD resource per target
            assert f"# ---- {node}:/etc/drbd.d/{target}.res ----" in out


def test_plan_keeps_minors_from_a_previous_cib(tmp_path: Path) -> None:
    first = tmp_path / "first"
    assert main(["plan", str(EXAMPLE), "--output-dir", str(first)]) == 0
    data = EXAMPLE.read_text().replace(
        '[[volumes]]\nname = "vmstore"', '[[volumes]]\nname = "new"\nsize = "1G"\n\n'
        '[[volumes]]\nname = "vmstore"', 1).replace(
        '{ lun = 0, volume = "vmstore" },', '{ lun = 0, volume = "new" },\n'
        '  { lun = 5, volume = "vmstore" },', 1)
    changed = _write(tmp_path, data)
    second = tmp_path / "second"
    assert main(["plan", str(changed), "--previous", str(first / "cib.xml"),
                 "--output-dir", str(second)]) == 0
    rel = "san-a/etc/drbd.d/backup.res"
    assert (first / rel).read_text() == (second / rel).read_text()
    before = (first / "san-a/etc/drbd.d/vm.res").read_text()
    after = (second / "san-a/etc/drbd.d/vm.res").read_text()
    for kept in ("volume 0 {\n        device    /dev/drbd0 minor 0;\n"
                 "        disk      /dev/data/vmstore;",
                 "volume 1 {\n        device    /dev/drbd1 minor 1;\n"
                 "        disk      /dev/data/db;"):
        assert kept in before and kept in after
    # The next minor after the LUNs' and both targets' reservations volumes.
    assert ("volume 2 {\n        device    /dev/drbd5 minor 5;\n"
            "        disk      /dev/data/new;") in after


def test_unparsable_previous_cib_is_refused(tmp_path: Path,
                                            capsys: pytest.CaptureFixture[str]) -> None:
    junk = tmp_path / "cib.xml"
    junk.write_text("<cib")
    assert main(["plan", str(EXAMPLE), "--previous", str(junk)]) == 1
    assert "bad-previous-cib" in capsys.readouterr().err


def test_usage_errors_exit_2() -> None:
    with pytest.raises(SystemExit) as info:
        main(["frobnicate"])
    assert info.value.code == 2


def test_the_example_is_valid_toml_with_the_documented_tables() -> None:
    data = tomllib.loads(EXAMPLE.read_text())
    assert set(data) == {"cluster", "networks", "nodes", "discovery_auth", "volumes", "targets"}


def test_the_peer_key_runs_only_known_steps(monkeypatch: pytest.MonkeyPatch,
                                             capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.setenv("SSH_ORIGINAL_COMMAND", "/usr/bin/iscsiha node facts; id")
    monkeypatch.setattr("sys.stdin", io.StringIO("{}"))
    assert main(["node", "from-peer"]) == 1
    report = json.loads(capsys.readouterr().out)["reports"][0]
    assert report["code"] == "peer-command-refused"
    assert report["value"] == "/usr/bin/iscsiha node facts; id"


def _command_paths(parser: argparse.ArgumentParser,
                   path: tuple[str, ...] = ()) -> list[tuple[str, ...]]:
    """Every command line that reaches a parser: (), ("validate",), ("cluster", "init")..."""
    found = [path]
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for name, child in action.choices.items():
                found += _command_paths(child, (*path, name))
    return found


def test_no_help_shows_hidden_commands_or_argparse_s_suppress_marker(
        capsys: pytest.CaptureFixture[str]) -> None:
    paths = _command_paths(_parser())
    assert ("node",) in paths and ("cluster", "serve-join") in paths  # the walk saw them
    assert len(paths) > 12
    for path in paths:
        with pytest.raises(SystemExit) as exit_:
            main([*path, "--help"])
        assert exit_.value.code == 0
        text = capsys.readouterr().out
        assert text.startswith(f"usage: iscsiha {' '.join(path)}".rstrip()), path
        assert "SUPPRESS" not in text, path
    for parent, hidden in (((), "node"), (("cluster",), "serve-join")):
        with pytest.raises(SystemExit):
            main([*parent, "--help"])
        listed = [line.split()[0] for line in capsys.readouterr().out.splitlines()
                  if line.startswith("    ")]
        assert listed and hidden not in listed, (parent, listed)


@pytest.mark.parametrize("doc", ["README.md", "tools/demo"])
def test_the_example_loaded_as_the_docs_do_gives_no_warning(
        doc: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """Git checks the example out readable by others (it cannot record 0600), and it holds
    secrets: the README and the demo start from a copy made with the mode the warning
    asks for, and load that copy, never the checkout's file."""
    text = (ROOT / doc).read_text()
    assert not re.search(r"iscsiha (validate|plan) examples/", text)
    (mode, dest), = re.findall(r"install -m (\d+) examples/two-node\.toml (\S+)\n", text)
    name = Path(dest.strip('"')).name
    assert f"iscsiha validate {name}" in text and f"iscsiha plan {name}" in text
    copy = tmp_path / name
    subprocess.run(["install", "-m", mode, str(EXAMPLE), str(copy)], check=True)
    for command in ("validate", "plan"):
        assert main([command, str(copy)]) == 0
        err = capsys.readouterr().err
        assert "warning" not in err and "secrets-readable" not in err, (command, err)


def test_a_reader_that_stops_early_is_no_bug(tmp_path: Path) -> None:
    """`iscsiha plan FILE | head -1`: iscsiha ends quietly as SIGPIPE would end it."""
    copy = tmp_path / "cluster.toml"
    copy.write_text(EXAMPLE.read_text())
    copy.chmod(0o600)
    proc = subprocess.Popen(
        [sys.executable, "-c", "import sys; from iscsiha.cli.main import main; "
                               "sys.exit(main())", "plan", str(copy)],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, cwd=ROOT)
    assert proc.stdout is not None and proc.stderr is not None
    # Closed before Python has even started: its first write finds no reader, every time.
    proc.stdout.close()
    err = proc.stderr.read().decode()
    assert proc.wait(timeout=60) == 141
    assert "bug" not in err and "Traceback" not in err, err
