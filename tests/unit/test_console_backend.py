"""The console's real backend, with the runner stubbed: files, and initiators from the CIB."""

from __future__ import annotations

import stat
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any, cast

import pytest

from iscsiha.console.backend import ClusterBackend
from iscsiha.errors import IscsihaError
from iscsiha.executors.lio import refused_initiators
from iscsiha.executors.runner import CommandResult, Runner

CIB = """<cib admin_epoch="0" epoch="3"><configuration><resources>
<group id="target-vm">
  <primitive id="target-vm-lio" class="ocf" provider="iscsiha" type="target">
    <instance_attributes id="target-vm-lio-params">
      <nvpair id="a" name="iqn" value="iqn.2026-11.com.example:san.vm"/>
      <nvpair id="b" name="initiators"
              value="iqn.1993-08.org.debian:01:hv1 iqn.1998-01.com.vmware:esx1-4f2a"/>
    </instance_attributes>
  </primitive>
</group>
<primitive id="other" class="ocf" provider="heartbeat" type="IPaddr2">
  <instance_attributes id="other-params">
    <nvpair id="c" name="initiators" value="iqn.2000-01.com.example:not-a-target"/>
  </instance_attributes>
</primitive>
</resources></configuration></cib>"""


class StubRunner:
    def __init__(self, stdout: str) -> None:
        self.stdout = stdout
        self.calls: list[list[str]] = []

    def run(self, argv: Sequence[str], *, input: str | None = None, check: bool = True,
            timeout: float | None = 60.0, env: Mapping[str, str] | None = None) -> Any:
        self.calls.append(list(argv))
        return CommandResult(tuple(argv), 0, self.stdout, "", 0.0)


def test_seen_initiators_are_those_the_cluster_s_targets_allow(tmp_path: Path) -> None:
    runner = StubRunner(CIB)
    backend = ClusterBackend(tmp_path / "desired.toml", cast(Runner, runner))
    assert backend.seen_initiators() == ["iqn.1993-08.org.debian:01:hv1",
                                         "iqn.1998-01.com.vmware:esx1-4f2a"]
    assert runner.calls == [["/usr/sbin/cibadmin", "--query"]]


class RoutingRunner:
    """cibadmin gets the CIB; the seen-initiators step answers per box (here or over SSH)."""

    def __init__(self) -> None:
        self.calls: list[list[str]] = []

    def run(self, argv: Sequence[str], *, input: str | None = None, check: bool = True,
            timeout: float | None = 60.0, env: Mapping[str, str] | None = None) -> Any:
        self.calls.append(list(argv))
        if argv[0] == "/usr/sbin/cibadmin":
            return CommandResult(tuple(argv), 0, CIB, "", 0.0)
        if argv[0] == "/usr/bin/ssh":  # san-b: down
            return CommandResult(tuple(argv), 255, "", "ssh: connect: No route to host", 0.0)
        return CommandResult(tuple(argv), 0, '{"iqns": ["iqn.2026-11.org.example:stranger"]}',
                             "", 0.0)


def test_seen_initiators_include_those_a_box_refused(tmp_path: Path,
                                                     monkeypatch: pytest.MonkeyPatch) -> None:
    desired = tmp_path / "desired.toml"
    desired.write_text((Path(__file__).resolve().parents[2] / "examples/two-node.toml")
                       .read_text())
    monkeypatch.setattr("socket.gethostname", lambda: "san-a")
    runner = RoutingRunner()
    backend = ClusterBackend(desired, cast(Runner, runner))
    assert backend.seen_initiators() == ["iqn.1993-08.org.debian:01:hv1",
                                         "iqn.1998-01.com.vmware:esx1-4f2a",
                                         "iqn.2026-11.org.example:stranger"]
    here = [c for c in runner.calls if c[0] != "/usr/bin/ssh" and "seen-initiators" in c]
    peer = [c for c in runner.calls if c[0] == "/usr/bin/ssh"]
    # Asked of both boxes (san-b over SSH, its hello first); the one that did not answer
    # is skipped.
    assert len(here) == 1 and len(peer) == 1


def test_refused_initiators_are_read_from_the_kernel_log() -> None:
    log = ("[  12.1] iSCSI Initiator Node: iqn.2026-11.org.example:new is not authorized to "
           "access iSCSI target portal group: 1.\n[  12.2] iSCSI Login negotiation failed.\n"
           "[  13.0] iSCSI Initiator Node: iqn.2026-11.org.example:new is not authorized to "
           "access iSCSI target portal group: 1.\n")
    assert refused_initiators(log) == ("iqn.2026-11.org.example:new",)
    assert refused_initiators("") == ()


def test_the_desired_file_is_written_0600_and_read_back(tmp_path: Path) -> None:
    path = tmp_path / "etc" / "desired.toml"
    backend = ClusterBackend(path, cast(Runner, StubRunner("")))
    with pytest.raises(IscsihaError) as caught:
        backend.load_desired()
    assert caught.value.reports[0].code == "unreadable-file"
    backend.save_desired("[cluster]\n")
    assert backend.load_desired() == "[cluster]\n"
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
