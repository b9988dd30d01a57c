"""The console's `supportbundle` verb: the backend asked with the admin's choices, a bad
time refused before anything is collected."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.unit.console_fakes import Harness


@pytest.fixture
def h(tmp_path: Path) -> Harness:
    return Harness(tmp_path)


def test_supportbundle_asks_the_backend_and_says_where_the_file_is(h: Harness) -> None:
    assert h.run("/ supportbundle") == 0
    assert h.run("/ supportbundle since=6h output=/root/case-1.tar.gz") == 0
    assert h.backend.bundles == [("2d", None), ("6h", "/root/case-1.tar.gz")]
    assert "wrote /root/case-1.tar.gz (1234 bytes)" in h.out.getvalue()
    assert h.unchanged()


def test_supportbundle_refuses_a_bad_since_and_collects_nothing(h: Harness) -> None:
    assert h.run("/ supportbundle since=--all") == 1
    assert "since = '--all'" in h.err.getvalue()
    assert h.backend.bundles == []
