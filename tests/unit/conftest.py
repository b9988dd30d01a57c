"""The unit tier never writes this machine's audit log nor asks a peer for a copy."""

from __future__ import annotations

from pathlib import Path

import pytest

from iscsiha.cli import audit as audit_cli
from iscsiha.executors import audit_log


@pytest.fixture(autouse=True)
def audit_here(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    folder = tmp_path / "audit-log"
    monkeypatch.setattr(audit_log, "AUDIT_DIR", str(folder))
    monkeypatch.setattr(audit_cli, "peer_boxes", lambda: None)
    return folder
