"""The console's `status timeline=yes`: the same lines as `iscsiha status --timeline`."""

from __future__ import annotations

from pathlib import Path

import pytest

from iscsiha.commands.timeline import Source, TimelineReport
from iscsiha.views import status_lines, timeline_lines
from tests.unit.console_fakes import Harness, running_status

REPORT = TimelineReport(None, (Source("san-a", 4, False),))


@pytest.fixture
def h(tmp_path: Path) -> Harness:
    harness = Harness(tmp_path)
    harness.backend.timeline_report = REPORT
    return harness


def test_status_with_timeline_adds_the_timeline_lines(h: Harness) -> None:
    assert h.run("status timeline=yes") == 0
    assert h.out.getvalue().splitlines() == [*status_lines(running_status()), "",
                                             *timeline_lines(REPORT)]
    # The targets' IQNs go along, for their first logins.
    assert h.backend.timeline_asked == [{t.name: t.iqn for t in running_status().targets}]


def test_status_without_timeline_or_with_no_is_the_status_alone(h: Harness) -> None:
    for line in ("status", "status timeline=no"):
        assert h.run(line) == 0
        assert h.out.getvalue().splitlines() == status_lines(running_status())
    assert h.backend.timeline_asked == []


def test_a_bad_timeline_value_is_refused_naming_it(h: Harness) -> None:
    assert h.run("status timeline=maybe") == 1
    assert "timeline = 'maybe'" in h.err.getvalue() and "yes or no" in h.err.getvalue()
    assert h.out.getvalue() == "" and h.backend.timeline_asked == []
