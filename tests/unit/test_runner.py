"""The subprocess runner: absolute paths only, no shell, secrets on stdin, failures reported."""

from __future__ import annotations

import pytest

from iscsiha.errors import IscsihaError
from iscsiha.executors.runner import Runner


def test_runs_a_program_and_captures_output() -> None:
    result = Runner().run(["/bin/echo", "hello"])
    assert (result.returncode, result.stdout, result.argv) == (0, "hello\n", ("/bin/echo", "hello"))


def test_stdin_carries_input_instead_of_argv() -> None:
    assert Runner().run(["/bin/cat"], input="s3cret").stdout == "s3cret"


def test_a_relative_program_is_refused() -> None:
    with pytest.raises(IscsihaError) as info:
        Runner().run(["echo", "x"])
    assert info.value.reports[0].code == "command-not-absolute"


def test_no_shell_interprets_the_arguments() -> None:
    assert Runner().run(["/bin/echo", "$HOME;", "|", "true"]).stdout == "$HOME; | true\n"


def test_failure_names_the_command_and_exit_code() -> None:
    with pytest.raises(IscsihaError) as info:
        Runner().run(["/bin/sh", "-c", "echo boom >&2; exit 3"])
    report = info.value.reports[0]
    assert report.code == "command-failed"
    assert "exited with 3: boom" in report.message


def test_unchecked_failure_returns_the_result() -> None:
    assert Runner().run(["/bin/false"], check=False).returncode == 1


def test_missing_program_and_timeout_are_reported() -> None:
    with pytest.raises(IscsihaError) as missing:
        Runner().run(["/nonexistent/tool"])
    assert missing.value.reports[0].code == "command-missing"
    with pytest.raises(IscsihaError) as slow:
        Runner().run(["/bin/sleep", "5"], timeout=0.2)
    assert slow.value.reports[0].code == "command-timeout"


def test_spawned_process_is_in_its_own_session() -> None:
    import os

    proc = Runner().spawn(["/bin/sleep", "5"])
    try:
        assert os.getsid(proc.pid) == proc.pid
    finally:
        proc.kill()
        proc.wait()
