"""The admin user's login shell hands console lines to iscsiha-console as root."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

SHELL = Path(__file__).resolve().parents[2] / "image/rootfs/usr/lib/iscsiha/admin-shell"


def _run(tmp_path: Path, *args: str) -> list[str]:
    """The shell with `sudo` replaced by a stub that prints the argv it got, one per line."""
    (tmp_path / "sudo").write_text('#!/bin/sh\nprintf "%s\\n" "$@"\n')
    (tmp_path / "sudo").chmod(0o755)
    env = {**os.environ, "PATH": f"{tmp_path}:{os.environ['PATH']}"}
    out = subprocess.run([str(SHELL), *args], env=env, capture_output=True, text=True,
                         check=True, cwd=tmp_path).stdout
    return out.splitlines()


def test_a_login_opens_the_console_as_root(tmp_path: Path) -> None:
    assert _run(tmp_path) == ["-n", "/usr/bin/iscsiha-console"]


def test_a_command_over_ssh_is_one_console_line_with_its_words(tmp_path: Path) -> None:
    (tmp_path / "volumes").touch()  # a word that matches a file is not expanded
    line = "/volumes create name=db size=100G *"
    assert _run(tmp_path, "-c", line) == ["-n", "/usr/bin/iscsiha-console", "/volumes",
                                          "create", "name=db", "size=100G", "*"]
