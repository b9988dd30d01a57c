"""`iscsiha-lab fault-timeline`'s pure parts: its arguments and the phase medians."""

from __future__ import annotations

import pytest
from iscsiha_lab.fault_timeline import parse_scenarios, summary

from iscsiha.errors import IscsihaError


def test_scenarios_are_checked_against_the_lab_s() -> None:
    assert parse_scenarios("planned move, power cut", 3) == ["planned move", "power cut"]
    for bad in ("", ",", "planned move,meteor", "x" * 5000):
        with pytest.raises(IscsihaError) as caught:
            parse_scenarios(bad, 3)
        assert "power cut" in caught.value.reports[0].allowed  # the allowed names are listed
    for runs in (0, -1, 21):
        with pytest.raises(IscsihaError):
            parse_scenarios("power cut", runs)


def _run(scenario: str, pause: float, rows: list[tuple[float, str, str]]) -> dict[str, object]:
    return {"scenario": scenario, "max_gap_s": pause,
            "timeline": [{"t": t, "node": n, "phase": p} for t, n, p in rows]}


def test_each_phase_s_median_counts_only_its_first_time_in_each_run() -> None:
    results = [
        _run("power cut", 30.0, [(9.0, "san-a", "fence confirmed (off)"),
                                 (20.0, "san-a", "promote drbd-alpha done"),
                                 (25.0, "san-a", "promote drbd-alpha done")]),
        _run("power cut", 20.0, [(7.0, "san-a", "fence confirmed (off)"),
                                 (14.0, "san-a", "promote drbd-alpha done")]),
        _run("power cut", 26.0, [(8.0, "san-a", "fence confirmed (off)")]),
        _run("planned move", 9.0, [(6.0, "san-b", "promote drbd-alpha done")]),
    ]
    got = summary(results)
    assert got["power cut"]["pauses_s"] == [30.0, 20.0, 26.0]
    assert got["power cut"]["median_pause_s"] == 26.0
    assert got["power cut"]["phases_median_s"] == {
        "san-a: fence confirmed (off)": 8.0, "san-a: promote drbd-alpha done": 17.0}
    assert list(got["power cut"]["phases_median_s"]) == [
        "san-a: fence confirmed (off)", "san-a: promote drbd-alpha done"]  # in time order
    assert got["planned move"]["phases_median_s"] == {"san-b: promote drbd-alpha done": 6.0}
