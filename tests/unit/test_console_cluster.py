"""/cluster init and /cluster join in the console: parameters, secrets asked, the error
boundary, completion, and a whole pair formed through two consoles."""

from __future__ import annotations

import io
from dataclasses import dataclass
from ipaddress import ip_address
from pathlib import Path
from typing import Any

import pytest

from iscsiha.commands import bootstrap, replace
from iscsiha.commands.bootstrap_env import InitResult
from iscsiha.commands.bootstrap_params import InitRequest
from iscsiha.commands.tiebreaker import TiebreakerAccess
from iscsiha.console.console import main
from iscsiha.console.state import Progress
from iscsiha.errors import IscsihaError, Report, Secret
from iscsiha.model.types import Config
from iscsiha.views import format_reports
from tests.unit.bootstrap_fakes import NETWORKS, Box, FakeTiebreaker, Server, free_port, held
from tests.unit.console_fakes import TOKEN, FakeBackend, Harness

INIT = ("/cluster init name=san peer=san-b " + " ".join(f"{k}={v}" for k, v in NETWORKS.items())
        + " bmc=10.0.0.21 peer_bmc=10.0.0.22 bmc_user=fence tiebreaker=10.0.0.5"
        " ping=10.30.0.1")


@pytest.fixture
def h(tmp_path: Path) -> Harness:
    harness = Harness(tmp_path)
    harness.desired.unlink()  # a fresh box: no desired state yet
    harness.shell.sync()
    return harness


def node(h: Harness, path: str) -> Any:
    return h.shell.root.get_node(path)


def test_a_fresh_box_says_how_to_start(h: Harness) -> None:
    assert node(h, "/cluster").summary() == (
        "not set up yet: `init` on the first box, `join` on the second", None)


def test_init_asks_for_the_bmc_passwords_and_prints_the_token(h: Harness) -> None:
    h.secrets += ["bmc-a-secret", "bmc-b-secret"]
    assert h.run(INIT) == 0, h.err.getvalue()
    (request, access), = h.backend.inits
    assert request == InitRequest(
        name="san", peer="san-b", networks=NETWORKS, bmc="10.0.0.21", bmc_user="fence",
        bmc_password=Secret("bmc-a-secret"), peer_bmc="10.0.0.22", peer_bmc_user="fence",
        peer_bmc_password=Secret("bmc-b-secret"), ping=("10.30.0.1",),
        tiebreaker="10.0.0.5")
    assert access == TiebreakerAccess("root", None)
    out = h.out.getvalue()
    assert f"\n    {TOKEN}\n" in out and "`/cluster join`" in out and f"={TOKEN}" not in out
    assert "waits for san-b" in out
    assert "bmc-a-secret" not in out + h.err.getvalue()
    assert "initialised (fake)" in h.progress


def test_init_refuses_passwords_typed_into_the_line(h: Harness) -> None:
    assert h.run(INIT + " bmc_password=bmc-a-secret peer_bmc_password=-") == 1
    err = h.err.getvalue()
    assert "bmc-a-secret" not in err and "secret-on-line" in err
    assert "bmc_password=-" in err and "nothing was run" in err
    assert h.backend.inits == [] and h.secrets == []


def test_init_takes_dash_passwords_and_optional_settings_on_the_line(h: Harness) -> None:
    h.secrets += ["bmc-a-secret", "bmc-b-secret"]
    line = (INIT.replace(" ping=10.30.0.1", "") + " bmc_password=- peer_bmc_password=-"
            " node=san-a storage2=10.31.0.0/24,10.31.0.11,10.31.0.12 peer_bmc_user=ipmi"
            " tiebreaker_user=qnetd ping=10.30.0.1,10.31.0.1")
    assert h.run(line) == 0, h.err.getvalue()
    (request, access), = h.backend.inits
    assert request.networks["storage2"] == "10.31.0.0/24,10.31.0.11,10.31.0.12"
    assert (request.node, request.peer_bmc_user, access.user) == ("san-a", "ipmi", "qnetd")
    assert request.ping == ("10.30.0.1", "10.31.0.1")
    assert (request.bmc_password, request.peer_bmc_password) == ("bmc-a-secret",
                                                                 "bmc-b-secret")
    assert h.secrets == []


def test_init_takes_a_signer_program_instead_of_ssh(h: Harness) -> None:
    h.secrets += ["bmc-a-secret", "bmc-b-secret"]
    line = INIT + " tiebreaker_signer=/x/signer.py"
    assert h.run(line) == 0, h.err.getvalue()
    (_, access), = h.backend.inits
    assert access == TiebreakerAccess("root", "/x/signer.py")


def test_init_without_a_required_setting_is_a_usage_error(h: Harness) -> None:
    assert h.run("/cluster init name=san peer=san-b") == 2
    assert h.backend.inits == []


def test_a_refused_init_prints_the_reports_and_exits_1(h: Harness) -> None:
    h.backend.bootstrap_error = IscsihaError([
        Report("address-not-here", "repl (this box's address)", "10.20.0.11",
               "10.20.0.11/24 on an interface of this box (repl)",
               "no interface of this box holds it; it has no address in 10.20.0.0/24")])
    h.secrets += ["bmc-a-secret", "bmc-b-secret"]
    assert h.run(INIT) == 1
    assert h.err.getvalue() == format_reports(h.backend.bootstrap_error.reports) + "\n"
    assert h.out.getvalue() == ""


def test_join_reports_the_pair(h: Harness, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(h.backend, "hostname", lambda: "san-b")
    h.secrets.append(TOKEN)
    assert h.run("/cluster join token=-") == 0
    assert h.backend.joins == [TOKEN]
    assert h.out.getvalue() == "san-b joined cluster san with san-a\n"
    h.backend.bootstrap_error = IscsihaError.single(
        "token-refused", "token", "10.10.0.11:5407", "the token the `cluster init` ...",
        "the first box refused this token")
    h.secrets.append(TOKEN)
    assert h.run("/cluster join") == 1
    assert "token-refused" in h.err.getvalue()


@pytest.mark.parametrize("line", [f"/cluster join token={TOKEN}", f"/cluster join {TOKEN}",
                                  f"/cluster join token={TOKEN.lower()}"])
def test_a_token_typed_into_the_line_is_refused(h: Harness, line: str) -> None:
    assert h.run(line) == 1
    err = h.err.getvalue()
    assert "secret-on-line" in err and "token=-" in err
    assert TOKEN not in err.upper()
    assert h.backend.joins == []


def test_join_in_one_shot_mode_reads_the_token_from_stdin(
        h: Harness, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr("sys.stdin", io.StringIO(TOKEN + "\n"))
    assert main(["--backups", str(h.tmp / "backup"), "/cluster", "join", "token=-"],
                backend=h.backend, preferences_dir=str(h.tmp / "prefs")) == 0
    assert "joined cluster san" in capsys.readouterr().out
    assert h.backend.joins == [TOKEN]


def test_one_shot_mode_without_a_line_on_stdin_is_refused(
        h: Harness, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr("sys.stdin", io.StringIO(""))
    assert main(["--backups", str(h.tmp / "backup"), "/cluster", "join", "token=-"],
                backend=h.backend, preferences_dir=str(h.tmp / "prefs")) == 1
    assert "secret-missing" in capsys.readouterr().err
    assert h.backend.joins == []


def test_replace_puts_the_dead_box_in_standby_and_prints_the_token(h: Harness) -> None:
    assert h.run("/cluster replace node=san-b") == 0, h.err.getvalue()
    assert h.backend.replaced == ["san-b"]
    out = h.out.getvalue()
    assert "san-b is in standby" in out and TOKEN in out and "`iscsiha cluster join`" in out
    h.backend.bootstrap_error = IscsihaError.single("box-online", "node", "san-b",
                                                    "a box that is gone", "is online")
    assert h.run("/cluster replace node=san-b") == 1
    assert "box-online" in h.err.getvalue()


def test_upgrade_runs_the_pair_upgrade_and_prints_how_it_ended(h: Harness) -> None:
    assert h.run("/cluster upgrade file=/var/tmp/iscsiha-root.img") == 0, h.err.getvalue()
    assert h.backend.upgrades == ["/var/tmp/iscsiha-root.img"]
    assert ("iscsiha 0.2.0 (commit abc): upgraded san-b; san-a reboots now and finishes "
            "its part at boot") in h.out.getvalue()
    h.backend.bootstrap_error = IscsihaError.single("upgrade-rolled-back", "node", "san-b",
                                                    "running iscsiha 0.2.0", "back on slot a")
    assert h.run("/cluster upgrade file=/var/tmp/iscsiha-root.img") == 1
    assert "upgrade-rolled-back" in h.err.getvalue()


def test_help_explains_init_and_join(h: Harness) -> None:
    assert h.run("/cluster help init") == 0
    text = h.out.getvalue()
    for word in ("SUBNET,THIS_BOX,PEER", "\ntiebreaker_user\n", "\npeer_bmc_password\n",
                 "EXAMPLE", "SEE ALSO"):
        assert word in text
    assert h.run("/cluster help join") == 0 and "\ntoken\n" in h.out.getvalue()


# -- completion -----------------------------------------------------------------------------

def test_networks_complete_from_this_box_s_addresses(h: Harness) -> None:
    h.backend.addresses = [("lo", ip_address("127.0.0.1"), 8),
                           ("eth1", ip_address("10.10.0.11"), 24),
                           ("eth2", ip_address("10.11.0.11"), 24),
                           ("eth2", ip_address("fe80::1"), 64)]
    cluster = node(h, "/cluster")
    assert cluster.ui_complete_init({}, "", "link0") == ["10.10.0.0/24,10.10.0.11,",
                                                          "10.11.0.0/24,10.11.0.11,"]
    used = {"link0": "10.10.0.0/24,10.10.0.11,10.10.0.12"}
    assert cluster.ui_complete_init(used, "", "link1") == ["10.11.0.0/24,10.11.0.11,"]
    assert h.shell._dispatch_completion("/cluster", "init", [], used, "link1=10.11",
                                        "kparam") == ["link1=10.11.0.0/24,10.11.0.11,"]


def test_the_other_init_and_join_parameters_complete(h: Harness) -> None:
    cluster = node(h, "/cluster")
    assert cluster.ui_complete_init({}, "", "node") == ["san-a "]
    assert cluster.ui_complete_init({}, "r", "tiebreaker_user") == ["root "]
    assert cluster.ui_complete_init({"bmc_user": "fence"}, "", "peer_bmc_user") == ["fence "]
    assert cluster.ui_complete_init({}, "", "name") == []
    assert cluster.ui_complete_join({}, "", "token") == ["- "]
    assert cluster.ui_complete_join({}, "ISJ1-AB", "token") == []  # never a token


def test_completion_survives_a_netlink_error(h: Harness) -> None:
    class Broken(FakeBackend):
        def local_addresses(self) -> list[Any]:
            raise OSError("netlink")

    h.state.backend = Broken(h.desired)
    assert node(h, "/cluster").ui_complete_init({}, "", "repl") == []


# -- a pair formed through two consoles -------------------------------------------------------

@dataclass
class BoxBackend(FakeBackend):
    """The console's backend over a Box: the real bootstrap, with the box's fakes."""

    box: Box | None = None

    def init_cluster(self, request: InitRequest, access: TiebreakerAccess,
                     progress: Progress) -> InitResult:
        assert self.box is not None
        return bootstrap.init(self.box.env, request, FakeTiebreaker(), progress)

    def join_cluster(self, token: str, progress: Progress) -> Config:
        assert self.box is not None
        return bootstrap.join(self.box.env, token, progress)

    def replace_box(self, node: str, progress: Progress) -> InitResult:
        assert self.box is not None
        return replace.replace(self.box.env, node, progress)

    def hostname(self) -> str:
        assert self.box is not None
        return self.box.name


def console_on(box: Box, tmp: Path) -> Harness:
    tmp.mkdir()
    harness = Harness(tmp)
    harness.state.backend = BoxBackend(box.root / "etc/iscsiha/desired.toml", box=box)
    harness.shell.sync()
    return harness


def _token(console: Harness) -> str:
    """The last token the console printed."""
    return [w for w in console.out.getvalue().split() if w.startswith("ISJ1-")][-1]


def _init(tmp_path: Path) -> tuple[Box, Box, Harness, Harness, int]:
    """san-a set up through its console; san-b's console waiting for the token."""
    port = free_port()
    a, b = Box(tmp_path / "a", "san-a", 1, port), Box(tmp_path / "b", "san-b", 2, port)
    first, second = console_on(a, tmp_path / "ca"), console_on(b, tmp_path / "cb")
    first.secrets += ["bmc-a-secret", "bmc-b-secret"]
    assert first.run(INIT) == 0, first.err.getvalue()
    return a, b, first, second, port


def test_two_consoles_form_the_pair(tmp_path: Path) -> None:
    a, b, first, second, _ = _init(tmp_path)
    token = _token(first)
    assert first.run("ls /nodes") == 0 and "san-b" in first.out.getvalue()

    b.held = b.held[:2]  # only link0 is cabled yet
    with Server(a) as server:
        second.secrets.append(token)
        assert second.run("/cluster join token=-") == 1
        assert "san-b repl" in second.err.getvalue()
        assert not (b.root / "etc/iscsiha/desired.toml").exists()
        b.held = held(2)
        b.cib.online = {"san-a", "san-b"}
        second.secrets.append(token)
        assert second.run("/cluster join") == 0, second.err.getvalue()
    assert server.wait() is True
    assert second.out.getvalue() == "san-b joined cluster san with san-a\n"
    assert second.run("ls /nodes") == 0 and "san-a" in second.out.getvalue()


def test_a_console_replaces_the_dead_box_and_the_new_one_rebuilds(tmp_path: Path) -> None:
    a, b, first, second, port = _init(tmp_path)
    b.cib.online = {"san-a", "san-b"}
    with Server(a) as server:
        second.secrets.append(_token(first))
        assert second.run("/cluster join") == 0, second.err.getvalue()
    assert server.wait() is True

    a.cib.online = {"san-a"}  # san-b died
    assert first.run("/cluster replace node=san-b") == 0, first.err.getvalue()
    token = _token(first)
    new = Box(tmp_path / "new-b", "san-b", 2, port)
    new.cib.online = {"san-a", "san-b"}
    third = console_on(new, tmp_path / "cn")
    with Server(a) as server:
        third.secrets.append(token)
        assert third.run("/cluster join") == 0, third.err.getvalue()
    assert server.wait() is True
    assert third.out.getvalue() == "san-b joined cluster san with san-a\n"
    assert [c.cluster.name for c in new.rebuilt] == ["san"] and new.applied == []
