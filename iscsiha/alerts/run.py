"""What `iscsiha-alert` does once it has something to report (iscsiha.alerts.agent
decides that first, cheaply): each of its three forms, and the delivery of events to
the journal and every recipient of the alert settings (iscsiha.alerts.config)."""

from __future__ import annotations

import socket
import sys
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field

from iscsiha.alerts import config, pacemaker, send, space
from iscsiha.alerts.events import Event, clean, detail_problem, make_event
from iscsiha.errors import IscsihaError
from iscsiha.executors import files
from iscsiha.executors.lvm import Lvm
from iscsiha.executors.pacemaker import Pacemaker
from iscsiha.executors.runner import Runner
from iscsiha.model.types import RecipientKind
from iscsiha.views import format_reports

PROG = "iscsiha-alert"
ARGS_MAX = 16
# A box that lost quorum learns it a moment after the membership change (qdevice votes):
# asked this often for this long, inside the alert's 30 s with the sends' 20 s.
QUORUM_POLL_S, QUORUM_WAIT_S = 1.0, 6.0
# Split brain is detected by both boxes at the same handshake: the first node of the
# desired state reports it.
FIRST_NODE_KINDS = ("drbd-split-brain",)


@dataclass(frozen=True)
class World:
    """The outside world, passed in so tests hand in their own."""

    runner: Runner = field(default_factory=Runner)
    hostname: Callable[[], str] = socket.gethostname
    settings_path: str = config.PATH
    space_state_path: str = space.STATE_PATH
    pool_state_path: str = space.POOL_STATE_PATH
    read_bytes: Callable[[str], bytes | None] = files.read
    journal: Callable[[Event], None] = send.journal
    senders: Mapping[RecipientKind, send.Sender] | None = None  # None: the real ones
    quorum_wait_s: float = QUORUM_WAIT_S


def say(message: str) -> None:
    print(f"{PROG}: {message}", file=sys.stderr)


def _settings(world: World) -> tuple[config.AlertSettings, bool]:
    """The settings and whether they could be read (a bad file still lets the journal
    have the event)."""
    try:
        return config.read(world.settings_path, world.read_bytes), True
    except IscsihaError as exc:
        say(f"cannot use the alert settings: {format_reports(exc.reports)}")
        return config.NONE, False


def _deliver(events: Sequence[Event], world: World) -> int:
    if not events:
        return 0
    settings, ok = _settings(world)
    by_kind = dict(world.senders) if world.senders is not None else send.senders(world.runner)
    for event in events:
        world.journal(event)
        for outcome in send.send_all(event, settings.alerts.recipients, by_kind):
            if outcome.error is not None:
                ok = False
                say(f"{event.kind} not sent to {outcome.recipient}: {outcome.error}")
    return 0 if ok else 1


def from_pacemaker(alert: pacemaker.PacemakerAlert, world: World) -> int:
    pcmk = Pacemaker(world.runner)
    name = world.hostname()
    box = pacemaker.Box(name, lambda: pcmk.dc_and_quorum()[0] == name,
                        lambda: _quorate(pcmk, world.quorum_wait_s))
    status = _deliver(pacemaker.events_for(alert, box), world)
    return max(status, _deliver(pacemaker.quorum_events(alert, box), world))


def _quorate(pcmk: Pacemaker, wait_s: float) -> bool | None:
    """False as soon as crm_mon says so; else its last answer after ``wait_s``."""
    end = time.monotonic() + wait_s
    while True:
        quorate = pcmk.dc_and_quorum()[1]
        if quorate is False or time.monotonic() >= end:
            return quorate
        time.sleep(QUORUM_POLL_S)


def from_command(kind: str, pairs: Sequence[str], world: World) -> int:
    if len(pairs) > ARGS_MAX:
        say(f"{len(pairs)} KEY=VALUE arguments; at most {ARGS_MAX}")
        return 2
    details: dict[str, str] = {}
    for pair in pairs:
        key, eq, value = pair.partition("=")
        if not eq or key in details:
            say(f"argument {clean(pair, 60)!r}: want KEY=VALUE, each key once")
            return 2
        details[key] = value
    problem = detail_problem(kind, details)
    if problem:
        say(problem)
        return 2
    box = world.hostname()
    if kind in FIRST_NODE_KINDS:
        settings, _ = _settings(world)
        if settings.nodes and settings.nodes[0] != box:
            return 0  # the other box reports it
    return _deliver([make_event(kind, box, pacemaker.now_iso(), details)], world)


def check_space(world: World) -> int:
    settings, _ = _settings(world)
    lvm = Lvm(world.runner)
    used = {}
    status = 0
    for vg in settings.volume_groups:
        try:
            used[vg] = space.percent_used(*lvm.size_and_free(vg))
        except IscsihaError as exc:
            say(format_reports(exc.reports))
            status = 1
    was = space.read_state(world.space_state_path, world.read_bytes)
    found, state = space.crossings(was, used, settings.alerts.vg_fill_percent)
    events = [make_event(c.kind, world.hostname(), pacemaker.now_iso(),
                         {"vg": c.key, "percent": str(c.percent),
                          "threshold": str(settings.alerts.vg_fill_percent)})
              for c in found]
    if events:
        status = max(status, _deliver(events, world))
    # Groups not read this time keep their last state.
    files.write_if_changed(world.space_state_path, space.state_text({**was, **state}).encode(),
                           space.STATE_MODE)
    if settings.pools:
        status = max(status, _check_pools(settings, lvm, world))
    return status


def _check_pools(settings: config.AlertSettings, lvm: Lvm, world: World) -> int:
    """Each thin pool of the settings against its own threshold (space.crossings)."""
    try:
        rows = {f"{r.vg}/{r.name}": r for r in lvm.pools()}
    except IscsihaError as exc:
        say(format_reports(exc.reports))
        return 1
    status = 0
    thresholds = {f"{vg}/{pool}": percent for vg, pool, percent in settings.pools}
    used = {}
    for key in thresholds:
        row = rows.get(key)
        if row is None:  # not made yet (an apply under way), or removed by hand
            say(f"thin pool {key} is not on this box")
            status = 1
            continue
        used[key] = space.pool_percent(row.data_percent, row.metadata_percent)
    was = space.read_state(world.pool_state_path, world.read_bytes, space.pool_key_ok)
    found, state = space.crossings(was, used, thresholds, ("pool-filling", "pool-ok"))
    events = [make_event(c.kind, world.hostname(), pacemaker.now_iso(),
                         {"vg": c.key.split("/")[0], "pool": c.key.split("/")[1],
                          "percent": str(c.percent), "threshold": str(thresholds[c.key]),
                          "data_percent": f"{rows[c.key].data_percent or 0:.1f}",
                          "metadata_percent": f"{rows[c.key].metadata_percent or 0:.1f}"})
              for c in found]
    if events:
        status = max(status, _deliver(events, world))
    files.write_if_changed(world.pool_state_path, space.state_text({**was, **state}).encode(),
                           space.STATE_MODE)
    return status
