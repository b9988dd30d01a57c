"""The image's drbd-handler: each DRBD handler raises its alert in the background and
a chained handler's exit status, which DRBD acts on, stays the handler's own.

The script is run with its absolute paths pointed at fakes here (a fake drbd-utils
handler with a chosen status, a recorder for iscsiha-alert); the rest is the shipped
text."""

from __future__ import annotations

import os
import subprocess
import time
from pathlib import Path

import pytest

from iscsiha.plan.drbd import HANDLER
from tests.conftest import ROOT

SCRIPT = ROOT / "image" / "rootfs" / HANDLER.lstrip("/")


@pytest.fixture
def handler(tmp_path: Path) -> Path:
    drbd = tmp_path / "drbd"
    drbd.mkdir()
    for name in ("crm-fence-peer.sh", "crm-unfence-peer.sh"):
        fake = drbd / name
        fake.write_text(f'#!/bin/sh\necho "$0 $*" >> {tmp_path}/handlers\nexit "${{FAKE_RC:-0}}"\n')
        fake.chmod(0o755)
    alert = tmp_path / "iscsiha-alert"
    alert.write_text(f'#!/bin/sh\necho "$*" >> {tmp_path}/alerts\n')
    alert.chmod(0o755)
    text = SCRIPT.read_text()
    for real, fake_path in (("/usr/lib/drbd/", f"{drbd}/"),
                            ("/usr/bin/iscsiha-alert", str(alert)),
                            ("systemd-cat -t iscsiha-alert ", "")):
        assert real in text
        text = text.replace(real, fake_path)
    script = tmp_path / "drbd-handler"
    script.write_text(text)
    script.chmod(0o755)
    return script


def run(handler: Path, *args: str, rc: int = 0) -> int:
    env = {"PATH": os.environ["PATH"], "DRBD_RESOURCE": "vm", "DRBD_MINOR": "0",
           "FAKE_RC": str(rc)}
    return subprocess.run([str(handler), *args], env=env, timeout=30).returncode


def alerts(tmp_path: Path) -> list[str]:
    """The background alert's arguments, once it has run (within 10 s)."""
    end = time.monotonic() + 10
    while not (tmp_path / "alerts").exists() and time.monotonic() < end:
        time.sleep(0.05)
    return (tmp_path / "alerts").read_text().splitlines()


@pytest.mark.parametrize("rc", [3, 4, 5, 7, 1])
def test_fence_peer_keeps_crm_fence_peer_s_exit_status_and_raises_disconnected(
        handler: Path, tmp_path: Path, rc: int) -> None:
    assert run(handler, "--alert", "drbd-disconnected", "crm-fence-peer.sh",
               "--role=Promoted", rc=rc) == rc
    assert (tmp_path / "handlers").read_text().split()[1:] == ["--role=Promoted"]
    assert alerts(tmp_path) == [f"event drbd-disconnected resource=vm minor=0 rc={rc}"]


def test_after_resync_target_still_unfences_then_raises_finished(handler: Path,
                                                                tmp_path: Path) -> None:
    assert run(handler, "--alert", "drbd-resync-finished", "crm-unfence-peer.sh") == 0
    assert (tmp_path / "handlers").read_text().startswith(f"{tmp_path}/drbd/crm-unfence-peer.sh")
    assert alerts(tmp_path) == ["event drbd-resync-finished resource=vm minor=0 rc=0"]


@pytest.mark.parametrize("kind", ["drbd-resync-started", "drbd-split-brain", "drbd-io-error"])
def test_an_alert_only_handler_raises_it_and_succeeds(handler: Path, tmp_path: Path,
                                                      kind: str) -> None:
    assert run(handler, "--alert", kind) == 0
    assert alerts(tmp_path) == [f"event {kind} resource=vm minor=0"]
    assert not (tmp_path / "handlers").exists()


def test_without_alert_the_handler_runs_as_before(handler: Path, tmp_path: Path) -> None:
    assert run(handler, "crm-fence-peer.sh", "--role=Promoted", rc=4) == 4
    time.sleep(0.2)
    assert not (tmp_path / "alerts").exists()


@pytest.mark.parametrize("args", [["--alert", "rm-rf"], ["--alert", "drbd-io-error", "sh"],
                                  ["other.sh"]])
def test_unknown_alerts_and_handlers_are_refused(handler: Path, args: list[str]) -> None:
    assert run(handler, *args) == 2
