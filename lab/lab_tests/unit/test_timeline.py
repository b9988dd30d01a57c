"""The failover timeline's reading of journal lines and of the verifier's pause."""

from __future__ import annotations

import json

from iscsiha_lab import timeline

FAULT_AT = 1_796_553_100.0


def entry(seconds_after: float, source: str, message: str) -> str:
    micros = int((FAULT_AT + seconds_after) * 1e6)
    return json.dumps({"__REALTIME_TIMESTAMP": str(micros), "SYSLOG_IDENTIFIER": source,
                       "MESSAGE": message})


def test_journal_lines_become_phases_on_the_host_clock_in_seconds_after_the_fault() -> None:
    text = "\n".join([
        entry(1.5, "corosync", "  [TOTEM ] A processor failed, forming new configuration: "
                               "token timed out (3000ms)"),
        entry(8.0, "pacemaker-controld", " notice: Requesting fencing (off) targeting node "
                                         "san-b"),
        entry(39.0, "pacemaker-fenced", " notice: Operation 'off' targeting san-b by san-a "
                                        "for pacemaker-controld.1855@san-a: OK (Done)"),
        entry(45.0, "pacemaker-controld", " notice: Requesting local execution of promote "
                                          "operation for drbd-alpha on san-a"),
        entry(46.0, "pacemaker-controld", " notice: Result of monitor operation for "
                                          "ping-storage on san-a: OK"),
        entry(50.5, "pacemaker-controld", " notice: Result of start operation for "
                                          "target-alpha-lio on san-a: error"),
        entry(51.0, "kernel", "drbd alpha/0 drbd1: role( Secondary -> Primary )"),
        entry(52.0, "kernel", "drbd beta: PingAck did not arrive in time."),
        "not json", json.dumps({"MESSAGE": "no timestamp"}),
    ])
    # The guest's clock runs 0.5 s ahead of the host's: taken off every line.
    events = timeline.events_from_journal("san-a", text, FAULT_AT, offset=0.5)
    assert [(round(e.at, 3), e.phase) for e in events] == [
        (1.0, "corosync: token lost"),
        (7.5, "fence requested (off)"),
        (38.5, "fence confirmed (off)"),
        (44.5, "promote drbd-alpha requested"),
        (50.0, "start target-alpha-lio FAILED"),
        (50.5, "drbd alpha/0: Primary"),
        (51.5, "drbd beta: connection lost"),
    ]
    assert {e.node for e in events} == {"san-a"}


def test_the_verifier_s_pause_is_placed_with_the_initiator_s_clock() -> None:
    probe = {"gap_from_wall": FAULT_AT + 2.0, "gap_to_wall": FAULT_AT + 12.5}
    events = timeline.events_from_probe(probe, FAULT_AT, offset=0.25)
    assert [(e.at, e.phase) for e in events] == [
        (1.75, "I/O: last write before the pause"), (12.25, "I/O: first write after the pause")]
    assert timeline.events_from_probe({}, FAULT_AT, 0.0) == []


def test_the_table_keeps_each_phase_s_first_occurrence_per_node() -> None:
    events = [timeline.Event(1.0, "san-a", "notify drbd-alpha requested", "a"),
              timeline.Event(2.0, "san-a", "notify drbd-alpha requested", "again"),
              timeline.Event(2.5, "san-b", "notify drbd-alpha requested", "b")]
    rows = timeline.first_of_each(events)
    assert [(r["t"], r["node"]) for r in rows] == [(1.0, "san-a"), (2.5, "san-b")]
    assert timeline.table(rows).splitlines() == [
        "    1.00 s  san-a  notify drbd-alpha requested",
        "    2.50 s  san-b  notify drbd-alpha requested"]
