"""The console's real backend, with the runner stubbed: files, and initiators from the CIB."""

from __future__ import annotations

import stat
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any, cast

import pytest

from appliance.backend import ClusterBackend
from iscsiha.errors import IscsihaError
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


def test_the_desired_file_is_written_0600_and_read_back(tmp_path: Path) -> None:
    path = tmp_path / "etc" / "desired.toml"
    backend = ClusterBackend(path, cast(Runner, StubRunner("")))
    with pytest.raises(IscsihaError) as caught:
        backend.load_desired()
    assert caught.value.reports[0].code == "unreadable-file"
    backend.save_desired("[cluster]\n")
    assert backend.load_desired() == "[cluster]\n"
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
