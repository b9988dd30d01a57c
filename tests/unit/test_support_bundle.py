"""`iscsiha support-bundle`: both boxes' parts, no secret in any file, a silent peer noted.

The boxes are fakes (their commands print what the real tools print, secrets
included); the real tools on real boxes are proven by
lab/lab_tests/scenarios/test_support_bundle.py.
"""

from __future__ import annotations

import base64
import io
import os
import tarfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from iscsiha.cli.main import main
from iscsiha.commands import node_steps, support_bundle
from iscsiha.commands.support_box import NEVER, collect, forbidden
from iscsiha.errors import IscsihaError
from iscsiha.executors import files
from iscsiha.executors.runner import CommandResult
from iscsiha.model.journal_time import journal_since
from iscsiha.plan.drbd import AUTHKEY_PATH, peer_secret
from iscsiha.protocol import codec
from iscsiha.protocol import messages as m
from iscsiha.protocol.version import THIS_BUILD, Speaks

EXAMPLE = Path(__file__).parents[2] / "examples" / "two-node.toml"
MODEL_SECRETS = ("bmc-a-secret", "bmc-b-secret", "disc0very-Secret", "hv-Secret-0001",
                 "san-Secret-0001", "backup-Secret-1")
HAND_TYPED = "typed-into-cib"  # a BMC password an admin put in the CIB by hand
LRM_ONLY = "only-in-lrm-store"  # a secret the desired state no longer has
LIO_ONLY = "only-in-lio-now"
KEY = bytes(range(7, 135))


class FakeRunner:
    """Each tool prints something holding secrets; a few fail the ways real ones do."""

    def __init__(self, node: str, key: bytes) -> None:
        self.node, self.key = node, key
        self.ran: list[list[str]] = []
        self.logged = ""  # more journal lines

    def run(self, argv: list[str], *, input: str | None = None, check: bool = True,
            timeout: float | None = 60.0) -> CommandResult:
        self.ran.append(argv)
        assert timeout is not None and timeout <= 120  # every command bounded
        tool = os.path.basename(argv[0])
        if tool == "corosync-qdevice-tool":
            raise IscsihaError.single("command-timeout", "command", " ".join(argv),
                                      "finishing within 30 s", "timed out")
        if tool == "targetcli":
            raise IscsihaError.single("command-missing", "command", argv[0], "a program")
        out = {
            "cibadmin": (f'<cib><configuration><resources><primitive id="fence-{self.node}">'
                         f'<instance_attributes id="ia"><nvpair id="p" name="passwd" '
                         f'value="{HAND_TYPED}"/><nvpair id="q" name="password" '
                         f'value="lrm://"/></instance_attributes></primitive></resources>'
                         f'</configuration></cib>'),
            "drbdsetup": f'resource web {{ net {{ shared-secret "{peer_secret(self.key, "web")}";'
                         f" }} }}",
            "journalctl": (f"Dec 06 {self.node} pacemaker-fenced: ipmitool -P bmc-a-secret\n"
                           f"Dec 06 {self.node} iscsiha: token ISJ1-ABCDEF-GHIJKL-MNOPQR\n"
                           f"Dec 06 {self.node} kernel: chap {LRM_ONLY} x hv-Secret-0001\n"
                           f"{self.logged}"),
            "iscsiha": '{"schema": 1, "health": "healthy"}',
            "crm_mon": f"Node List:\n  * Online: [ {self.node} ]\n",
        }.get(tool, f"{tool} ran\n")
        return CommandResult(tuple(argv), 0, out, "", 0.1)


@dataclass(frozen=True)
class FakeBox:
    """node_steps.Box's fields, over a temporary root."""

    runner: FakeRunner
    read_bytes: Callable[[str], bytes | None]
    desired_path: str
    secrets_dir: str
    drbd_dir: str
    hostname: Callable[[], str]
    wall_clock: Callable[[], float] = lambda: 1_765_000_000.0
    speaks: Speaks = THIS_BUILD


def make_box(root: Path, node: str, desired: str | None = None) -> FakeBox:
    """A box whose files are under ``root``; /etc/corosync/authkey is its KEY."""
    (root / "lrm" / "target-web-lio").mkdir(parents=True)
    (root / "lrm" / "target-web-lio" / "chap_secret").write_text(LRM_ONLY + "\n")
    (root / "drbd.d").mkdir()
    (root / "drbd.d" / "web.res").write_text(f'shared-secret "{peer_secret(KEY, "web")}";\n')
    (root / "desired.toml").write_text(desired if desired is not None else EXAMPLE.read_text())

    def read(path: str) -> bytes | None:
        if path == AUTHKEY_PATH:
            return KEY
        if path.startswith(str(root)):
            return files.read(path)
        return None  # the fixed paths of a real box: not on this machine

    return FakeBox(FakeRunner(node, KEY), read, str(root / "desired.toml"),
                   str(root / "lrm"), str(root / "drbd.d"), lambda: node)


def lio_dump() -> dict[str, Any]:
    return {"targets": [{"wwn": "iqn.x", "tpgs": [{"node_acls": [
        {"chap_userid": "hypervisors", "chap_password": LIO_ONLY,
         "chap_mutual_password": "san-Secret-0001"}]}]}]}


class FakeBoxes:
    """The peer answers with the part its own box makes, or not at all."""

    def __init__(self, here: str, peer: str, peer_box: FakeBox | None) -> None:
        self.here, self._peer, self._peer_box = here, peer, peer_box
        self.asked: list[tuple[str, Any, float]] = []

    @property
    def names(self) -> list[str]:
        return [self.here, self._peer]

    def call(self, node: str, step: m.Step[Any, Any], request: Any, timeout: float = 300.0) -> Any:
        self.asked.append((node, request, timeout))
        if self._peer_box is None:
            raise IscsihaError.single("step-failed", "node", node, "support-part succeeding",
                                      "ssh: connect to host 10.1.0.2 port 22: No route to host")
        # Through the real wire format, as `iscsiha node support-part` answers.
        ok, out = node_steps.serve(self._peer_box, step.name, codec.dumps(request))  # type: ignore[arg-type]
        assert ok, out
        return codec.decode(step.reply, codec.loads(out))

    def on_both(self, step: m.Step[Any, Any], request: Any) -> dict[str, Any]:
        raise AssertionError("not used")


def members(data: bytes) -> dict[str, bytes]:
    with tarfile.open(fileobj=io.BytesIO(data), mode="r:gz") as tar:
        return {i.name: tar.extractfile(i).read() for i in tar if i.isfile()}  # type: ignore[union-attr]


def every_secret() -> list[bytes]:
    plain = [*MODEL_SECRETS, HAND_TYPED, LRM_ONLY, LIO_ONLY, peer_secret(KEY, "web")]
    return [s.encode() for s in plain] + [KEY, KEY.hex().encode(), base64.b64encode(KEY),
                                          b"ISJ1-ABCDEF"]


@pytest.fixture(autouse=True)
def _lio(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr("iscsiha.commands.support_box.Lio.dump", lambda self: lio_dump())


def test_the_bundle_holds_both_boxes_parts_and_no_secret_of_either(tmp_path: Path) -> None:
    here = make_box(tmp_path / "a", "san-a")
    # The peer's desired state is older: a secret only it knows must not get through.
    peer_desired = EXAMPLE.read_text().replace("backup-Secret-1", "peer-Only-Sec1")
    peer = make_box(tmp_path / "b", "san-b", peer_desired)
    data = support_bundle.make(here, FakeBoxes("san-a", "san-b", peer), "6h", lambda _: None)
    got = members(data)
    for node in ("san-a", "san-b"):
        for name in ("pacemaker/cib.xml", "drbd/drbdsetup-show.txt", "journal/units.txt",
                     "lio/rtslib-dump.json", "status.json", "commands.txt",
                     f"files{tmp_path}/{'a' if node == 'san-a' else 'b'}/desired.toml"):
            assert f"{node}/{name}" in got, f"{node}/{name}"
    for name, content in got.items():
        for secret in [*every_secret(), b"peer-Only-Sec1"]:
            assert secret not in content, (name, secret)
    assert b"[redacted]" in got["san-b/journal/units.txt"]
    assert b'"health": "healthy"' in got["san-a/status.json"]  # the rest is kept
    readme = got["README.txt"].decode()
    assert "san-a: " in readme and "san-b: " in readme and "no part" not in readme


def test_a_silent_peer_is_noted_and_the_bundle_still_made(tmp_path: Path) -> None:
    here = make_box(tmp_path / "a", "san-a")
    boxes = FakeBoxes("san-a", "san-b", None)
    data = support_bundle.make(here, boxes, "2d", lambda _: None)
    got = members(data)
    assert "san-b: no part" in got["README.txt"].decode()
    assert "No route to host" in got["README.txt"].decode()
    assert not [n for n in got if n.startswith("san-b/")]
    assert boxes.asked[0][2] == support_bundle.PEER_TIMEOUT


def test_failed_and_timed_out_commands_are_recorded_not_fatal(tmp_path: Path) -> None:
    part = collect(make_box(tmp_path, "san-a"), "-2d", lambda _: None)
    assert b"not collected: timed out" in part.files["corosync/qdevice-tool.txt"]
    assert b"not collected" in part.files["lio/targetcli-ls.txt"]
    log = part.files["commands.txt"].decode()
    assert "corosync/qdevice-tool.txt: /usr/sbin/corosync-qdevice-tool -sv: timed out" in log
    assert "pacemaker/crm_mon.txt: /usr/sbin/crm_mon -1 -r -f -A -t: exit 0" in log


def test_journal_since_reaches_journalctl_as_one_option_value(tmp_path: Path) -> None:
    box = make_box(tmp_path, "san-a")
    collect(box, journal_since("2026-12-01 08:00") or "", lambda _: None)
    journal = [a for a in box.runner.ran if a[0] == "/usr/bin/journalctl"]
    assert journal and all("--since=2026-12-01 08:00" in a for a in journal)


def test_key_files_are_never_read_into_a_part(tmp_path: Path) -> None:
    assert all(forbidden(p) for p in (AUTHKEY_PATH, "/etc/iscsiha/ssh/id_ed25519",
                                      "/etc/ssh/ssh_host_ed25519_key",
                                      "/var/lib/pacemaker/lrm/secrets/x/chap_secret"))
    assert not forbidden("/etc/corosync/corosync.conf")
    link = tmp_path / "innocent.conf"
    link.symlink_to(AUTHKEY_PATH)  # a name that looks harmless, pointing at the key
    assert forbidden(str(link))
    assert NEVER  # the list the collector checks every path against


@pytest.mark.parametrize("given, journal", [
    ("6h", "-6h"), ("30min", "-30min"), ("2d", "-2d"), ("1w", "-1w"), ("today", "today"),
    ("yesterday", "yesterday"), ("2026-12-01", "2026-12-01"),
    ("2026-12-01 08:30", "2026-12-01 08:30"), ("2026-12-01 08:30:15", "2026-12-01 08:30:15"),
    ("--all", None), ("-6h", None), ("0h", None), ("6 h", None), ("2026-13-01", None),
    ("2026-02-30", None), ("6h; rm -rf /", None), ("", None), ("1234567h", None),
    ("٣h", None),
])
def test_since_takes_only_the_documented_forms(given: str, journal: str | None) -> None:
    assert journal_since(given) == journal


def test_the_peer_refuses_a_bad_since_before_collecting(tmp_path: Path) -> None:
    box = make_box(tmp_path, "san-b")
    ok, out = node_steps.serve(box, "support-part", '{"since": "--output=/etc/x"}')  # type: ignore[arg-type]
    assert not ok and "since" in out
    assert box.runner.ran == []


def _tar(entries: list[tuple[tarfile.TarInfo, bytes]]) -> str:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w:gz") as tar:
        for info, data in entries:
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    return base64.b64encode(buf.getvalue()).decode()


def _info(name: str, kind: bytes = tarfile.REGTYPE) -> tarfile.TarInfo:
    info = tarfile.TarInfo(name)
    info.type = kind
    return info


@pytest.mark.parametrize("archive", [
    _tar([(_info("/etc/passwd"), b"x")]),
    _tar([(_info("../../etc/cron.d/x"), b"x")]),
    _tar([(_info("a/../../x"), b"x")]),
    _tar([(_info("link", tarfile.SYMTYPE), b"")]),
    _tar([(_info("dev", tarfile.CHRTYPE), b"")]),
    _tar([(_info("name\nwith newline"), b"x")]),
    "not base64!",
    base64.b64encode(b"not a tar.gz").decode(),
])
def test_a_hostile_peer_part_is_refused_whole(archive: str) -> None:
    with pytest.raises(IscsihaError) as exc:
        support_bundle.unpack(archive, "san-b")
    assert exc.value.reports[0].code == "bad-support-part"


def test_a_peer_part_of_too_many_files_is_refused() -> None:
    archive = _tar([(_info(f"f{i}"), b"") for i in range(support_bundle.MEMBERS_MAX + 1)])
    with pytest.raises(IscsihaError, match="support part"):
        support_bundle.unpack(archive, "san-b")


def test_a_good_peer_part_unpacks() -> None:
    got = support_bundle.unpack(_tar([(_info("pacemaker/cib.xml"), b"<cib/>")]), "san-b")
    assert got == {"pacemaker/cib.xml": b"<cib/>"}


def test_cli_refuses_a_bad_since_and_writes_nothing(tmp_path: Path,
                                                     capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "b.tar.gz"
    assert main(["support-bundle", "--since", "last week", "--output", str(out)]) == 1
    assert "since" in capsys.readouterr().err and not out.exists()


def test_the_bundle_file_is_readable_by_root_only(tmp_path: Path) -> None:
    path = tmp_path / "bundle.tar.gz"
    support_bundle.write(str(path), b"data")
    assert path.stat().st_mode & 0o777 == 0o600
    (tmp_path / "file").write_text("")
    with pytest.raises(IscsihaError, match="output"):
        support_bundle.write(str(tmp_path / "file" / "x"), b"")  # its folder is a file


def test_a_desired_state_the_model_refuses_still_has_its_secrets_removed(tmp_path: Path) -> None:
    broken = EXAMPLE.read_text().replace("hv-Secret-0001", "only-in-Broken1").replace(
        'name = "vm"', 'name = "--vm"', 1)  # a name the model refuses
    box = make_box(tmp_path, "san-a", broken)
    box.runner.logged = "Dec 06 login failed with only-in-Broken1\n"  # unnamed: by value
    part = collect(box, "-2d", lambda _: None)
    desired = next(d for n, d in part.files.items() if n.endswith("desired.toml"))
    assert b'"--vm"' in desired  # the file is there, as it is
    assert not [n for n, d in part.files.items() if b"only-in-Broken1" in d]
