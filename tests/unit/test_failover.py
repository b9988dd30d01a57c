"""The last failover or move found in both boxes' events, and how `status --timeline`
words it (iscsiha.failover, iscsiha.views)."""

from __future__ import annotations

import time

from iscsiha.commands.timeline import Source, TimelineReport
from iscsiha.errors import Report
from iscsiha.failover import Failover, last_failover
from iscsiha.timeline import Event
from iscsiha.views import NO_FAILOVER, timeline_lines, wall_text

T0 = 1_796_553_100.0
IQNS = {"alpha": "iqn.2026-11.com.example:alpha", "beta": "iqn.2026-11.com.example:beta"}


def ev(at: float, node: str, phase: str) -> Event:
    return Event(T0 + at, node, phase, "")


def login(at: float, node: str, target: str) -> Event:
    return ev(at, node, f"first initiator logged in ({IQNS[target]})")


def power_cut(target: str = "alpha", at: float = 0.0) -> list[Event]:
    """san-a lost power; san-b (the survivor) fences it and takes ``target`` over."""
    return [ev(at + 0.0, "san-b", "corosync: token lost"),
            ev(at + 1.5, "san-b", "corosync: peer left"),
            ev(at + 2.0, "san-b", "fence requested (off)"),
            ev(at + 30.0, "san-b", "fence confirmed (off)"),
            ev(at + 31.0, "san-b", f"promote drbd-{target} requested"),
            ev(at + 31.4, "san-b", f"drbd {target}/0: Primary"),
            ev(at + 31.5, "san-b", f"promote drbd-{target} done"),
            ev(at + 31.6, "san-b", f"notify drbd-{target} done"),
            ev(at + 32.0, "san-b", f"start target-{target}-ip0 done"),
            ev(at + 33.0, "san-b", f"start target-{target}-lio done"),
            login(at + 35.25, "san-b", target)]


def rows(failover: Failover, target: str) -> list[tuple[float, str, str]]:
    found = next(t for t in failover.targets if t.target == target)
    return [(round(r.at, 2), r.node, r.phase) for r in found.rows]


def test_a_power_cut_reads_from_the_peer_lost_through_fencing_to_the_first_login() -> None:
    # A link flap that healed a minute before is not where this failover began.
    flap = [ev(-60.0, "san-b", "corosync: token lost"), ev(-59.0, "san-b", "corosync: peer left"),
            ev(-50.0, "san-b", "corosync: peer joined")]
    failover = last_failover([*power_cut(), *flap], IQNS)
    assert failover is not None and failover.kind == "failover"
    assert failover.began_at == T0
    assert rows(failover, "alpha") == [
        (0.0, "san-b", "corosync: token lost"), (1.5, "san-b", "corosync: peer left"),
        (2.0, "san-b", "fence requested (off)"), (30.0, "san-b", "fence confirmed (off)"),
        (31.0, "san-b", "promote drbd-alpha requested"), (31.4, "san-b", "drbd alpha/0: Primary"),
        (31.5, "san-b", "promote drbd-alpha done"), (32.0, "san-b", "start target-alpha-ip0 done"),
        (33.0, "san-b", "start target-alpha-lio done"),
        (35.25, "san-b", f"first initiator logged in ({IQNS['alpha']})")]
    (alpha,) = failover.targets
    assert alpha.served_at == T0 + 33.0 and alpha.logged_in and alpha.promoted_on == "san-b"


def test_a_planned_move_begins_with_the_stop_on_the_box_it_leaves() -> None:
    events = [ev(0.0, "san-a", "stop target-alpha-lio requested"),
              ev(0.3, "san-a", "stop target-alpha-lio done"),
              ev(0.9, "san-a", "demote drbd-alpha requested"),
              ev(1.0, "san-a", "drbd alpha: Secondary"),
              ev(1.1, "san-a", "demote drbd-alpha done"),
              ev(1.5, "san-b", "promote drbd-alpha requested"),
              ev(1.7, "san-b", "promote drbd-alpha done"),
              ev(2.4, "san-b", "start target-alpha-lio done"),
              # beta's stop on san-a is not alpha's beginning
              ev(-5.0, "san-a", "stop target-beta-lio requested")]
    failover = last_failover(events, IQNS)
    assert failover is not None and failover.kind == "move"
    assert rows(failover, "alpha")[0][0] == 0.0
    assert rows(failover, "alpha")[-1] == (2.4, "san-b", "start target-alpha-lio done")
    (alpha,) = failover.targets
    assert not alpha.logged_in  # no login line: said so, not invented


def test_targets_that_moved_together_share_the_first_event_as_their_zero() -> None:
    events = [e for e in power_cut("alpha") if "initiator" not in e.phase]
    events += [ev(40.0, "san-b", "promote drbd-beta done"),
               ev(41.0, "san-b", "start target-beta-lio done"), login(41.5, "san-b", "beta")]
    failover = last_failover(events, IQNS)
    assert failover is not None
    assert [t.target for t in failover.targets] == ["alpha", "beta"]
    beta = rows(failover, "beta")
    assert beta[0] == (0.0, "san-b", "corosync: token lost")
    assert beta[-1] == (41.5, "san-b", f"first initiator logged in ({IQNS['beta']})")
    # alpha's own resources are not in beta's rows
    assert not any("alpha" in phase for _, _, phase in beta)


def test_the_latest_promote_wins_and_an_earlier_move_is_not_its_beginning() -> None:
    earlier = power_cut("alpha")
    back = [ev(200.0, "san-b", "stop target-alpha-lio requested"),
            ev(201.0, "san-a", "promote drbd-alpha done"),
            ev(202.0, "san-a", "start target-alpha-lio done")]
    failover = last_failover([*earlier, *back], IQNS)
    assert failover is not None and failover.kind == "move"
    assert failover.began_at == T0 + 200.0
    assert failover.targets[0].promoted_on == "san-a"


def test_no_promote_in_the_journal_is_no_failover() -> None:
    events = [ev(0.0, "san-a", "corosync: peer joined"),
              ev(1.0, "san-a", "start target-alpha-lio done")]
    assert last_failover(events, IQNS) is None
    lines = timeline_lines(TimelineReport(None, (Source("san-a", 2, False),)))
    assert lines == [f"timeline: {NO_FAILOVER}", "events  san-a: 2 from its journal"]
    assert NO_FAILOVER == "no failover or move in the journal since boot"


def test_the_view_names_each_box_s_clock_the_start_s_wall_time_and_a_silent_peer() -> None:
    failover = last_failover(power_cut(), IQNS)
    assert failover is not None
    silent = Report("step-failed", "node", "san-a", "journal-events succeeding there",
                    "ssh: connect to host 10.0.0.1 port 22: No route to host")
    lines = timeline_lines(TimelineReport(failover, (Source("san-b", 11, False),
                                                     Source("san-a", 0, True, silent))))
    assert lines[0] == ("timeline: last failover (a box was lost), began "
                        f"{wall_text(T0)}; seconds after its first event, each box's own "
                        "clock (NTP keeps them close)")
    assert lines[1] == f"target  alpha: served on san-b from {wall_text(T0 + 33.0)}"
    assert lines[2] == "      0.00 s  san-b  corosync: token lost"
    assert lines[-4] == "     33.00 s  san-b  start target-alpha-lio done"
    assert lines[-2] == "events  san-b: 11 from its journal"
    assert lines[-1] == ("events  san-a: did not answer, its events are left out (normal "
                         "when it is off): ssh: connect to host 10.0.0.1 port 22: No route "
                         "to host")
    assert wall_text(T0 + 33.0) == time.strftime("%Y-%m-%d %H:%M:%S",
                                                 time.localtime(T0 + 33)) + ".000"


def test_the_view_says_when_the_start_or_the_login_is_missing() -> None:
    events = [e for e in power_cut() if "lio done" not in e.phase]
    failover = last_failover(events, IQNS)
    assert failover is not None
    assert timeline_lines(TimelineReport(failover, ()))[1] == (
        "target  alpha: promoted on san-b; its target's start is not in the journal "
        "(within 300 s)")
    failover = last_failover([e for e in power_cut() if "initiator" not in e.phase], IQNS)
    assert failover is not None
    assert timeline_lines(TimelineReport(failover, ()))[1].endswith(
        "; no initiator login recorded within 130 s")


def test_a_refused_reply_and_an_unreadable_journal_are_worded_apart() -> None:
    refused = Report("peer-message-refused", "san-a journal-events reply.events[0].phase",
                     "\x1b[2J", "printable text of 1 to 200 characters")
    broken = Report("command-missing", "command", "/usr/bin/journalctl", "an installed program",
                    "No such file")
    lines = timeline_lines(TimelineReport(None, (Source("san-a", 0, True, refused),
                                                 Source("san-b", 0, False, broken))))
    assert lines[1] == ("events  san-a: its reply was refused (san-a journal-events "
                        "reply.events[0].phase = \\x1b[2J; allowed: printable text of 1 to "
                        "200 characters): its events are left out")
    assert lines[2] == ("events  san-b: journal not read (command-missing: No such file): its "
                        "events are left out")
