"""`iscsiha cluster init/join/token/serve-join`: the arguments reach bootstrap, and what
they print; the box is a Box (tests/unit/bootstrap_fakes.py)."""

from __future__ import annotations

import io
import stat
import threading
import time
from dataclasses import dataclass
from pathlib import Path

import pytest

from iscsiha.cli.main import main
from iscsiha.commands import bootstrap, join_token
from iscsiha.commands.node_steps import DESIRED_PATH
from iscsiha.model.load import load_text
from tests.unit.bootstrap_fakes import NETWORKS, WAIT, Box, free_port

ARGS = ["cluster", "init", "--name", "san", "--peer", "san-b",
        *(a for k, v in NETWORKS.items() for a in (f"--{k}", v)),
        "--bmc", "10.0.0.21", "--peer-bmc", "10.0.0.22", "--bmc-user", "fence",
        "--ping", "10.30.0.1"]


@dataclass
class Boxes:
    a: Box
    b: Box
    here: Box  # the box `iscsiha` runs on: host_env() gives its env


@pytest.fixture
def boxes(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Boxes:
    port = free_port()
    a = Box(tmp_path / "a", "san-a", 1, port)
    found = Boxes(a, Box(tmp_path / "b", "san-b", 2, port), a)
    monkeypatch.setattr(bootstrap, "host_env", lambda *args, **kwargs: found.here.env)
    monkeypatch.setattr("sys.stdin", io.StringIO("bmc-a-secret\nbmc-b-secret\n"))
    return found


def signer(tmp_path: Path) -> str:
    program = tmp_path / "signer"
    program.write_text("#!/bin/sh\ncase \"$1\" in ca) printf CA | base64 ;;\n"
                       "sign) base64 -d | sed 's/^/SIGNED /' | base64 ;; esac\n")
    program.chmod(program.stat().st_mode | stat.S_IXUSR)
    return str(program)


def test_init_prints_the_token_and_where_to_use_it(
        boxes: Boxes, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    a = boxes.a
    assert main([*ARGS, "--tiebreaker", "10.0.0.5", "--tiebreaker-signer",
                 signer(tmp_path)]) == 0
    out = capsys.readouterr().out.splitlines()
    assert out[0].startswith("cluster san: san-a is set up (quorum through the tiebreaker "
                             "10.0.0.5) and waits for san-b until ")
    token = out[2].strip()
    assert out[2] == f"    {token}" and "`iscsiha cluster join`" in out[3]
    assert "join token=-" in out[3] and f"={token}" not in "\n".join(out)
    assert join_token.decode(token).port == a.env.join_port
    config = load_text(a.file(DESIRED_PATH).decode())
    assert [str(n.bmc.password) for n in config.cluster.nodes] == ["bmc-a-secret",
                                                                  "bmc-b-secret"]
    assert a.file("/etc/corosync/qdevice/net/qnetd-cacert.crt") == b"CA"


def test_init_reports_name_the_cli_options(boxes: Boxes,
                                            capsys: pytest.CaptureFixture[str]) -> None:
    args = [*ARGS]
    args[args.index("--repl") + 1] = "10.20.0.0/24,10.20.0.11,10.21.0.12"
    assert main(args) == 1
    err = capsys.readouterr().err
    assert "error: --repl (peer's address) = '10.21.0.12'" in err
    assert "1 problem found; nothing was applied." in err


def test_join_token_and_serve_join(boxes: Boxes, capsys: pytest.CaptureFixture[str],
                                   monkeypatch: pytest.MonkeyPatch) -> None:
    assert main(ARGS) == 0
    assert main(["cluster", "token"]) == 0  # the first token stops working
    token = capsys.readouterr().out.splitlines()[-2].strip()
    codes: list[int] = []
    server = threading.Thread(target=lambda: codes.append(main(["cluster", "serve-join"])))
    server.start()
    deadline = time.monotonic() + WAIT
    while "waiting for san-b" not in capsys.readouterr().out:  # logged once it listens
        assert time.monotonic() < deadline, "the listener did not start"
        time.sleep(0.01)
    boxes.here = boxes.b
    boxes.b.cib.online = {"san-a", "san-b"}
    monkeypatch.setattr("sys.stdin", io.StringIO(token + "\n"))
    assert main(["cluster", "join"]) == 0
    server.join(WAIT)
    assert codes == [0]
    assert "san-b joined cluster san with san-a" in capsys.readouterr().out
