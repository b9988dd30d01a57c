"""The local consoles: greeting and admin's first login (image/.../iscsiha/local-console).

The pure parts run here; the whole path (agetty, login, chpasswd, the console) is
proven by tests/image/test_image_flash.py on the booted image.
"""

from __future__ import annotations

import fcntl
import os
import subprocess
import threading
import time
from collections.abc import Callable
from pathlib import Path
from types import ModuleType

import pytest

SCRIPT = Path(__file__).resolve().parents[2] / "image/rootfs/usr/lib/iscsiha/local-console"
SET = "admin:$y$j9T$abc$def:20000:0:99999:7:::\n"
UNSET = "root:!:20000::::::\nadmin:*:20000:0:99999:7:::\n"


@pytest.fixture(scope="module")
def lc(load_script: Callable[[Path, str], ModuleType]) -> ModuleType:
    return load_script(SCRIPT, "iscsiha_image_local_console")


def test_admin_with_the_image_star_or_nothing_has_no_password_yet(lc: ModuleType) -> None:
    assert lc.password_is_unset(UNSET)
    assert lc.password_is_unset("admin::20000:0:99999:7:::\n")
    assert not lc.password_is_unset(SET)
    assert not lc.password_is_unset("admin:!$y$locked:20000::::::\n")  # locked on purpose
    assert not lc.password_is_unset("root:*:1::::::\n")  # no admin: no first login


@pytest.mark.parametrize(("first", "second", "reason"), [
    ("", "", "empty"),
    ("long-enough-1", "long-enough-2", "differ"),
    ("short-pw1", "short-pw1", "9 characters; at least 10"),
    ("tab\there-and-more", "tab\there-and-more", "control characters"),
])
def test_bad_passwords_are_refused_with_the_reason(lc: ModuleType, first: str, second: str,
                                                   reason: str) -> None:
    assert reason in lc.password_problem(first, second)


def test_a_ten_character_password_typed_twice_is_accepted(lc: ModuleType) -> None:
    assert lc.password_problem("0123456789", "0123456789") is None


def test_only_the_user_name_agetty_passes_is_taken(lc: ModuleType) -> None:
    assert lc.login_user(["--", "admin"]) == "admin"
    assert lc.login_user(["--", ""]) is None
    assert lc.login_user(["-f", "admin"]) is None
    assert lc.login_user([]) is None


def test_the_greeting_lists_each_link_with_agettys_address_escapes(lc: ModuleType) -> None:
    text = lc.issue_text(["lo", "enp0s2", "bond0.100", "evil\\4{x}"], first_login=True)
    assert "\\n" in text  # agetty's host name escape
    assert "enp0s2     \\4{enp0s2}  \\6{enp0s2}" in text
    assert "bond0.100  \\4{bond0.100}  \\6{bond0.100}" in text
    assert "{lo}" not in text
    assert "evil" not in text and "1 link(s) with unusual names" in text
    assert "first login here sets admin's password" in text


def test_the_first_login_hint_goes_once_the_password_is_set(lc: ModuleType) -> None:
    text = lc.issue_text(["eth0"], first_login=False)
    assert "sets admin's password" not in text
    assert "Log in as admin" in text


def test_greeting_writes_the_issue_file_from_the_links_present(
        lc: ModuleType, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    net = tmp_path / "net"
    for link in ("lo", "ens3", "ens4"):
        (net / link).mkdir(parents=True)
    (tmp_path / "shadow").write_text(SET)
    issue = tmp_path / "run/issue.d/50-iscsiha.issue"
    monkeypatch.setattr(lc, "SYS_NET", net)
    monkeypatch.setattr(lc, "SHADOW", tmp_path / "shadow")
    monkeypatch.setattr(lc, "ISSUE_FILE", issue)
    assert lc.greeting(reload=False) == 0
    assert "\\4{ens3}" in issue.read_text() and "\\4{ens4}" in issue.read_text()
    assert oct(issue.stat().st_mode & 0o777) == "0o644"


class Console:
    """Scripted answers and a fake shadow file: the first login's logic, no system."""

    def __init__(self, answers: list[str], shadow: str = UNSET) -> None:
        self.answers = answers
        self.shadow = shadow
        self.said: list[str] = []
        self.set_to: list[str] = []

    def ask(self, prompt: str) -> str:
        return self.answers.pop(0)

    def set_password(self, password: str) -> str | None:
        self.set_to.append(password)
        self.shadow = SET
        return None

    def run(self, lc: ModuleType, lock: Path) -> bool:
        result: bool = lc.first_login(read_shadow=lambda: self.shadow, ask=self.ask,
                                      set_password=self.set_password, say=self.said.append,
                                      lock_path=lock)
        return result


def test_first_login_sets_the_password_typed_twice(lc: ModuleType, tmp_path: Path) -> None:
    console = Console(["correct horse", "correct horse"])
    assert console.run(lc, tmp_path / "lock")
    assert console.set_to == ["correct horse"]


def test_first_login_asks_again_after_a_mismatch_and_gives_up_after_three(
        lc: ModuleType, tmp_path: Path) -> None:
    console = Console(["aaaaaaaaaa", "bbbbbbbbbb", "", "", "0123456789", "0123456789"])
    assert console.run(lc, tmp_path / "lock")
    assert console.set_to == ["0123456789"]
    assert sum("Not set" in line for line in console.said) == 2
    stubborn = Console(["x", "x"] * 3)
    assert not stubborn.run(lc, tmp_path / "lock")
    assert stubborn.set_to == []


def test_a_refusal_by_chpasswd_is_shown_and_nothing_counts_as_set(
        lc: ModuleType, tmp_path: Path) -> None:
    console = Console(["0123456789", "0123456789"] * 3)
    console.set_password = lambda password: "BAD PASSWORD: too simple"  # type: ignore[method-assign]
    assert not console.run(lc, tmp_path / "lock")
    assert any("too simple" in line for line in console.said)


def test_a_second_console_waits_and_then_finds_the_password_set(
        lc: ModuleType, tmp_path: Path) -> None:
    lock = tmp_path / "lock"
    holder = os.open(lock, os.O_RDWR | os.O_CREAT)
    fcntl.flock(holder, fcntl.LOCK_EX)  # the first console is typing its password
    second = Console(["never asked"] * 2)
    outcome: list[bool] = []
    thread = threading.Thread(target=lambda: outcome.append(second.run(lc, lock)))
    thread.start()
    deadline = time.monotonic() + 10
    while not second.said and time.monotonic() < deadline:
        time.sleep(0.01)
    assert "waiting" in second.said[0]
    second.shadow = SET  # the first console set it...
    os.close(holder)  # ...and let go
    thread.join(10)
    assert outcome == [False]
    assert second.answers == ["never asked"] * 2 and second.set_to == []
    assert "set (on another console)" in second.said[-1]


def test_the_script_refuses_an_unknown_command(lc: ModuleType) -> None:
    done = subprocess.run(["python3", str(SCRIPT), "bogus"], capture_output=True, text=True,
                          check=False)
    assert done.returncode == 2 and "greeting [--no-reload]" in done.stderr
