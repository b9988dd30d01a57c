"""The agent helper and the thin entry points: same answers as in-process, hostile
requests refused without stopping the helper, and the fallback when it is absent."""

from __future__ import annotations

import io
import json
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any, TextIO

import pytest

from iscsiha.agents import address, discovery, helper, target, thin
from iscsiha.agents.helper import Helper
from tests.conftest import ROOT

GOOD = {
    "address": {"ip": "10.30.0.100", "cidr_netmask": "24"},
    "target": {"iqn": "iqn.2026-11.com.example:san.vm", "portals": "10.30.0.100:3260",
               "luns": "0:vmstore:/dev/null:serial-a", "auth": "none",
               "initiators": "iqn.1993-08.org.debian:01:hv1"},
    "discovery": {"auth": "chap", "chap_user": "hv", "chap_secret": "hv-Secret-0001"},
}
BAD = {
    "address": {"ip": "10.30.0.999", "cidr_netmask": "24"},
    "target": {"iqn": "iqn.2026-11.com.example:san.vm", "portals": "nowhere"},
    "discovery": {"auth": "none", "chap_user": "hv", "chap_secret": "x"},
}
DISPATCH = {"address": address.dispatch, "target": target.dispatch,
            "discovery": discovery.dispatch}


def _env(params: Mapping[str, str]) -> dict[str, str]:
    return {f"OCF_RESKEY_{k}": v for k, v in params.items()}


@pytest.fixture
def sock_dir() -> Iterator[Path]:
    # Not tmp_path: a Unix socket's path has at most 107 bytes, and pytest's are long.
    path = Path(tempfile.mkdtemp(prefix="ah-"))
    yield path
    shutil.rmtree(path, ignore_errors=True)


class Served:
    """A helper serving in a thread; stopped and joined by the fixture."""

    def __init__(self, path: Path, **kwargs: Any) -> None:
        self.helper = Helper(str(path), **kwargs)
        self.helper.bind()
        self.thread = threading.Thread(target=self.helper.serve_forever, name="test-helper")
        self.thread.start()

    def close(self) -> None:
        self.helper.stop()
        self.thread.join(timeout=10)
        assert not self.thread.is_alive()


@pytest.fixture
def served(sock_dir: Path) -> Iterator[Served]:
    s = Served(sock_dir / "h.sock", allowed_uids=frozenset({os.getuid()}), read_timeout=0.5)
    yield s
    s.close()


def _via_helper(path: Path, agent: str, action: str,
                env: Mapping[str, str]) -> tuple[int, str, str]:
    out, err = io.StringIO(), io.StringIO()
    rc = thin.main(agent, [agent, action], env, path=str(path), out=out, err=err)
    return rc, out.getvalue(), err.getvalue()


def _in_process(agent: str, action: str, env: Mapping[str, str]) -> tuple[int, str, str]:
    out, err = io.StringIO(), io.StringIO()
    rc = DISPATCH[agent]([agent, action], env, out, err)
    return rc, out.getvalue(), err.getvalue()


def _raw(path: Path, data: bytes, *, close_write: bool = True) -> dict[str, Any] | None:
    """Send bytes as a client; the helper's JSON answer, or None if it just closed."""
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as s:
        s.settimeout(10)
        s.connect(str(path))
        try:
            s.sendall(data)
            if close_write:
                s.shutdown(socket.SHUT_WR)
            answer = b""
            while chunk := s.recv(65536):
                answer += chunk
        except (BrokenPipeError, ConnectionResetError):
            return None
    return json.loads(answer) if answer else None


def _request(agent: object = "address", argv1: object = "meta-data",
             env: object = None, **extra: object) -> bytes:
    return json.dumps({"agent": agent, "argv1": argv1, "env": env or {}, **extra}).encode()


def _still_answers(path: Path) -> None:
    rc, out, _ = _via_helper(path, "address", "meta-data", {})
    assert rc == 0 and '<resource-agent name="address"' in out


# -- the same answers as in-process -------------------------------------------------


@pytest.mark.parametrize("agent", sorted(DISPATCH))
def test_meta_data_through_the_helper_is_the_in_process_answer(served: Served,
                                                               agent: str) -> None:
    path = Path(served.helper.path)
    assert _via_helper(path, agent, "meta-data", {}) == _in_process(agent, "meta-data", {})


@pytest.mark.parametrize("agent", sorted(DISPATCH))
@pytest.mark.parametrize("params", ["good", "bad"])
def test_validate_all_through_the_helper_is_the_in_process_answer(
        served: Served, agent: str, params: str) -> None:
    env = _env((GOOD if params == "good" else BAD)[agent])
    got = _via_helper(Path(served.helper.path), agent, "validate-all", env)
    assert got == _in_process(agent, "validate-all", env)
    assert (got[0] == 0) == (params == "good"), got
    if params == "bad":
        assert got[2]  # the reason reaches Pacemaker's log


def test_an_unknown_action_is_unimplemented_as_in_process(served: Served) -> None:
    got = _via_helper(Path(served.helper.path), "address", "frobnicate", {})
    assert got == _in_process("address", "frobnicate", {})
    assert got[0] == 3


def test_the_target_takes_its_resource_name_from_the_request_not_the_process(
        monkeypatch: pytest.MonkeyPatch) -> None:
    seen: list[str | None] = []

    class RecordingHandover:
        def __init__(self, runner: object, instance: str | None) -> None:
            seen.append(instance)

    monkeypatch.setattr(target, "Handover", RecordingHandover)
    monkeypatch.setenv("OCF_RESOURCE_INSTANCE", "the-helpers-own")
    env = {**_env(GOOD["target"]), "OCF_RESOURCE_INSTANCE": "target-vm-lio"}
    assert _in_process("target", "validate-all", env)[0] == 0
    assert seen == ["target-vm-lio"]


def test_what_an_executor_prints_reaches_its_own_caller(
        sock_dir: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    def noisy(argv: list[str], environ: Mapping[str, str], out: TextIO, err: TextIO) -> int:
        print(f"warning for {environ['OCF_RESKEY_n']}", file=sys.stderr)  # as _warn does
        return 0

    monkeypatch.setattr(sys, "stderr", helper._PerThread(sys.stderr))
    s = Served(sock_dir / "h.sock", dispatch={"address": noisy},
               allowed_uids=frozenset({os.getuid()}))
    try:
        results = [_via_helper(sock_dir / "h.sock", "address", "start",
                               {"OCF_RESKEY_n": str(i)}) for i in range(3)]
    finally:
        s.close()
    assert results == [(0, "", f"warning for {i}\n") for i in range(3)]


# -- hostile requests ----------------------------------------------------------------

HOSTILE = {
    "not JSON": b"start the target please",
    "not UTF-8": b"\xff\xfe{}",
    "a list": b'["address", "start"]',
    "unknown agent": _request(agent="../../bin/sh"),
    "agent not a string": _request(agent=["address"]),
    "action with a space": _request(argv1="meta data"),
    "action not a string": _request(argv1=7),
    "empty action": _request(argv1=""),
    "env a list": _request(env=["OCF_RESKEY_ip=1.2.3.4"]),
    "env key not OCF_": _request(env={"PATH": "/tmp/evil"}),
    "env key LD_PRELOAD": _request(env={"LD_PRELOAD": "/tmp/x.so"}),
    "env key with a dash": _request(env={"OCF_RESKEY_a-b": "1"}),
    "env key too long": _request(env={"OCF_" + "A" * 65: "1"}),
    "env value with NUL": _request(env={"OCF_RESKEY_ip": "10.0.0.1\x00x"}),
    "env value not a string": _request(env={"OCF_RESKEY_ip": 10}),
    "env value too long": _request(env={"OCF_RESKEY_ip": "1" * (64 * 1024 + 1)}),
    "unknown field": _request(cwd="/"),
    "empty": b"",
}


@pytest.mark.parametrize("case", sorted(HOSTILE))
def test_a_hostile_request_gets_an_error_and_the_helper_answers_the_next(
        served: Served, case: str) -> None:
    path = Path(served.helper.path)
    reply = _raw(path, HOSTILE[case])
    assert reply is not None
    assert reply["rc"] == 2 and reply["err"].startswith("agent helper: "), reply
    _still_answers(path)


def test_an_oversized_request_is_refused(served: Served) -> None:
    path = Path(served.helper.path)
    reply = _raw(path, _request(env={"OCF_RESKEY_x": "1" * 60000, "OCF_RESKEY_y": "1" * 60000,
                                     "OCF_RESKEY_z": "1" * 60000, "OCF_RESKEY_w": "1" * 60000,
                                     "OCF_RESKEY_v": "1" * 60000}))
    assert reply is not None and reply["rc"] == 2 and "262144" in reply["err"], reply
    _still_answers(path)


def test_a_client_that_never_sends_is_cut_off_and_others_are_served_meanwhile(
        served: Served) -> None:
    path = Path(served.helper.path)
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as slow:
        slow.settimeout(10)
        slow.connect(str(path))
        _still_answers(path)  # while the slow one holds its thread
        started = time.monotonic()
        reply = json.loads(slow.recv(65536))
    assert reply["rc"] == 2 and "not complete within 0.5 s" in reply["err"]
    assert time.monotonic() - started < 5
    _still_answers(path)


def test_a_caller_that_is_not_allowed_is_refused(sock_dir: Path) -> None:
    s = Served(sock_dir / "h.sock", allowed_uids=frozenset({os.getuid() + 1}))
    try:
        reply = _raw(sock_dir / "h.sock", _request())
    finally:
        s.close()
    assert reply is not None and reply["rc"] == 4
    assert f"uid {os.getuid()} may not ask" in reply["err"]


def test_an_action_that_raises_is_a_generic_failure_and_the_helper_goes_on(
        sock_dir: Path) -> None:
    def broken(argv: list[str], environ: Mapping[str, str], out: TextIO, err: TextIO) -> int:
        raise RuntimeError("a bug")

    s = Served(sock_dir / "h.sock", dispatch={**DISPATCH, "target": broken},
               allowed_uids=frozenset({os.getuid()}))
    try:
        rc, _, err = _via_helper(sock_dir / "h.sock", "target", "monitor", {})
        _still_answers(sock_dir / "h.sock")
    finally:
        s.close()
    assert rc == 1 and "internal error" in err


# -- the socket ----------------------------------------------------------------------


def test_the_socket_is_for_its_owner_only_and_gone_after_stop(sock_dir: Path) -> None:
    s = Served(sock_dir / "h.sock")
    assert (sock_dir / "h.sock").stat().st_mode & 0o777 == 0o600
    s.close()
    assert not (sock_dir / "h.sock").exists()


def test_a_second_helper_on_a_live_socket_is_refused(served: Served) -> None:
    with pytest.raises(RuntimeError, match="another agent helper answers there"):
        Helper(served.helper.path).bind()
    _still_answers(Path(served.helper.path))


def test_a_dead_helpers_socket_is_replaced(sock_dir: Path) -> None:
    stale = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    stale.bind(str(sock_dir / "h.sock"))
    stale.close()  # the file stays, nobody listens
    s = Served(sock_dir / "h.sock", allowed_uids=frozenset({os.getuid()}))
    try:
        _still_answers(sock_dir / "h.sock")
    finally:
        s.close()


def test_a_directory_others_may_write_is_refused(sock_dir: Path) -> None:
    sock_dir.chmod(0o777)
    with pytest.raises(RuntimeError, match="writable by no one else"):
        Helper(str(sock_dir / "h.sock")).bind()


# -- the thin client -----------------------------------------------------------------


def test_without_a_helper_the_action_runs_in_process(
        sock_dir: Path, capsys: pytest.CaptureFixture[str]) -> None:
    rc = thin.main("address", ["address", "meta-data"], {}, path=str(sock_dir / "absent"))
    assert rc == 0 and '<resource-agent name="address"' in capsys.readouterr().out


def test_a_socket_nobody_listens_on_falls_back_in_process(
        sock_dir: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    stale = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    stale.bind(str(sock_dir / "h.sock"))
    stale.close()
    ran: list[list[str]] = []
    monkeypatch.setattr(thin, "in_process", lambda agent, argv: ran.append(argv) or 0)
    assert thin.main("target", ["target", "monitor"], {}, path=str(sock_dir / "h.sock")) == 0
    assert ran == [["target", "monitor"]]


@pytest.mark.parametrize("argv, env", [
    (["address"], {}),
    (["address", "start", "extra"], {}),
    (["address", "Start Now"], {}),
    (["address", "start"], {"OCF_RESKEY_odd-name": "1"}),
    (["address", "start"], {"OCF_RESKEY_ip": "1" * (64 * 1024 + 1)}),
])
def test_what_the_helper_would_refuse_runs_in_process_unsent(
        served: Served, monkeypatch: pytest.MonkeyPatch, argv: list[str],
        env: dict[str, str]) -> None:
    ran: list[list[str]] = []
    monkeypatch.setattr(thin, "in_process", lambda agent, argv: ran.append(argv) or 7)
    assert thin.main("address", argv, env, path=served.helper.path) == 7
    assert ran == [argv]


def test_only_ocf_variables_are_sent() -> None:
    data = thin.encode_request("address", ["address", "start"],
                               {"PATH": "/bin", "HOME": "/root", "OCF_ROOT": "/usr/lib/ocf"})
    assert data is not None and json.loads(data)["env"] == {"OCF_ROOT": "/usr/lib/ocf"}


@pytest.mark.parametrize("answer", [b"", b"not json", b'{"rc": "0"}', b'{"rc": 300}',
                                    b'{"rc": 0, "out": 5}', b"[0]"])
def test_once_sent_a_broken_answer_fails_the_action_and_nothing_runs_again(
        sock_dir: Path, monkeypatch: pytest.MonkeyPatch, answer: bytes) -> None:
    monkeypatch.setattr(thin, "in_process", lambda agent, argv: pytest.fail("ran twice"))
    listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    listener.bind(str(sock_dir / "h.sock"))
    listener.listen(1)

    def answer_once() -> None:
        conn, _ = listener.accept()
        with conn:
            while conn.recv(65536):
                pass
            conn.sendall(answer)

    server = threading.Thread(target=answer_once)
    server.start()
    try:
        rc, out, err = _via_helper(sock_dir / "h.sock", "target", "start", {})
    finally:
        server.join(timeout=10)
        listener.close()
    assert (rc, out) == (1, "")
    assert "broke off" in err and "not run again" in err


def test_the_thin_client_imports_nothing_heavy() -> None:
    code = ("import sys, iscsiha.agents.thin\n"
            "print(' '.join(sorted(sys.modules)))")
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    loaded = set(subprocess.run([sys.executable, "-c", code], env=env, check=True,
                                capture_output=True, text=True).stdout.split())
    heavy = {m for m in loaded if m.startswith(("iscsiha.executors", "iscsiha.agents.ocf",
                                               "iscsiha.agents.address", "iscsiha.model",
                                               "pyroute2", "rtslib_fb", "xml"))}
    assert "iscsiha.agents.thin" in loaded and heavy == set()


def test_the_entry_points_use_the_thin_client_only() -> None:
    for agent in DISPATCH:
        text = (ROOT / "ocf" / agent).read_text()
        imports = [line for line in text.splitlines() if line.startswith(("import", "from"))]
        assert imports == ["import sys", "from iscsiha.agents.thin import main"], agent
