"""The file executor: written only when content or mode differ."""

from __future__ import annotations

from pathlib import Path

from iscsiha.executors.files import write_if_changed


def test_write_if_changed_writes_only_a_different_content_or_mode(tmp_path: Path) -> None:
    path = str(tmp_path / "f")
    assert write_if_changed(path, b"a", 0o600)
    assert not write_if_changed(path, b"a", 0o600)
    assert write_if_changed(path, b"a", 0o644)  # a mode change alone is written
    assert write_if_changed(path, b"b", 0o644)
    assert (tmp_path / "f").read_bytes() == b"b"
    assert (tmp_path / "f").stat().st_mode & 0o777 == 0o644
