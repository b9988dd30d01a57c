"""Journal lines as failover phases (iscsiha.timeline): what the appliance and the lab read."""

from __future__ import annotations

import json

from iscsiha import timeline
from iscsiha.timeline import LOGIN_IDENTIFIER, LOGIN_LINE

FAULT_AT = 1_796_553_100.0
IQN = "iqn.2026-11.com.example:san.vm"


def entry(seconds_after: float, source: str, message: object) -> str:
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


def test_without_a_zero_the_events_keep_the_box_s_wall_time() -> None:
    (event,) = timeline.events_from_journal("san-a", entry(2.25, "corosync", "A processor "
                                                                             "failed"))
    assert event.at == FAULT_AT + 2.25


def test_the_login_watcher_s_line_is_the_first_initiator_s_login() -> None:
    line = LOGIN_LINE.format(iqn=IQN, initiator="iqn.1993-08.org.debian:01:hv1")
    (event,) = timeline.events_from_journal("san-b", entry(3.0, LOGIN_IDENTIFIER, line))
    assert event.phase == f"first initiator logged in ({IQN})"
    # Another program's line saying the same is not ours.
    assert timeline.events_from_journal("san-b", entry(3.0, "bash", line)) == []


def test_the_fencer_s_levels_are_phases_a_failed_device_the_watchdog_wait_the_end() -> None:
    lines = [  # pacemaker-fenced 3.0, a box that died with its BMC
        "Operation 'off' [3211] targeting san-a using fence-san-a returned 1",
        "Waiting 20s for san-a to self-fence (off) for client pacemaker-controld.1867",
        "Operation 'off' targeting san-a by san-b for pacemaker-controld.1867@san-b: OK (Done)",
    ]
    events = [e for i, line in enumerate(lines) for e in timeline.events_from_journal(
        "san-b", entry(float(i), "pacemaker-fenced", line))]
    assert [e.phase for e in events] == ["fence by fence-san-a failed",
                                         "fence: waiting for the watchdog",
                                         "fence confirmed (off)"]


def test_hostile_journal_lines_are_skipped_and_the_good_ones_kept() -> None:
    good = entry(1.0, "corosync", "A processor failed")
    hostile = [
        "{" * 100_000,  # nesting deeper than the parser goes
        json.dumps({"__REALTIME_TIMESTAMP": "9" * 5000, "SYSLOG_IDENTIFIER": "corosync",
                    "MESSAGE": "A processor failed"}),  # more digits than int() takes
        json.dumps({"__REALTIME_TIMESTAMP": str(10 ** 400), "SYSLOG_IDENTIFIER": "corosync",
                    "MESSAGE": "A processor failed"}),  # too large for a float
        json.dumps({"__REALTIME_TIMESTAMP": str(-10 ** 20), "SYSLOG_IDENTIFIER": "corosync",
                    "MESSAGE": "A processor failed"}),
        json.dumps(["a", "list"]), json.dumps("a string"), "null", "[]",
        # journalctl gives a non-UTF-8 message as its bytes
        entry(1.0, "corosync", [65, 32, 112, 255, 0]),
        entry(1.0, ["corosync"], "A processor failed"),
        entry(1.0, "corosync", "A processor failed " + "x" * timeline.LINE_MAX),
        # a name copied into the phase must not carry terminal control codes
        entry(1.0, "pacemaker-controld", "Result of start operation for "
                                         "target-\x1b[2J-lio on san-a: OK"),
        entry(1.0, "pacemaker-controld", "Result of start operation for "
                                         f"{'r' * 300} on san-a: OK"),
        "\udcff\udcfe not UTF-8, as decoding with errors='surrogateescape' gives it",
    ]
    text = "\n".join([hostile[0], good, *hostile[1:]])
    events = timeline.events_from_journal("san-a", text)
    assert [e.phase for e in events] == ["corosync: token lost"]


def test_the_table_keeps_each_phase_s_first_occurrence_per_node() -> None:
    events = [timeline.Event(1.0, "san-a", "notify drbd-alpha requested", "a"),
              timeline.Event(2.0, "san-a", "notify drbd-alpha requested", "again"),
              timeline.Event(2.5, "san-b", "notify drbd-alpha requested", "b")]
    rows = timeline.first_of_each(events)
    assert [(r["t"], r["node"]) for r in rows] == [(1.0, "san-a"), (2.5, "san-b")]
    assert timeline.table(rows).splitlines() == [
        "    1.00 s  san-a  notify drbd-alpha requested",
        "    2.50 s  san-b  notify drbd-alpha requested"]
