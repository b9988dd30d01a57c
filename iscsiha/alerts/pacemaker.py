"""Pacemaker's alert environment (CRM_alert_*) into events, and which box reports which.

Every variable is untrusted: anyone who may edit the CIB shapes the timestamp format,
and names and descriptions are echoed into mail, syslog and SNMP. Each is checked
before use; a value that is not what Pacemaker sends raises AlertInputError.

Each event once. Pacemaker's controller on every box raises node and fencing alerts
for every membership change and fencing result it learns of (controld_callbacks.c
peer_update_callback, controld_fencing.c handle_fence_notification), so both boxes
run the agent for the same event; a resource alert comes only from the box whose
executor ran the operation (controld_execd.c process_lrm_event). So:

- node lost: only the box that is not the lost one reports it (the lost box cannot
  see itself lost; in a split each side reports the other, which is two facts);
- node member: only the DC reports it. The box that joins sees the other box become
  a member too, which is no news; the DC was running before the join. With no DC
  (both boxes starting together) nobody reports it: that is a cold start, no incident;
- fencing: only the box that is not the target reports it (in a pair that is
  exactly one box; a fenced box is off anyway);
- resources: the box that ran the operation, the only one Pacemaker tells;
- quorum lost: Pacemaker has no quorum alert. On a node-lost event each box asks
  whether its own side still has quorum and reports when it has not: it is about that
  box's side, so each box reports only its own.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime

from iscsiha.alerts.events import Event, clean, make_event
from iscsiha.model import names

PREFIX = "CRM_alert_"
# The plan's timestamp-format (iscsiha.plan.cib.ALERT_TIMESTAMP_FORMAT), as strptime reads it.
TIMESTAMP_FORMAT = "%Y-%m-%dT%H:%M:%S.%f%z"
VALUE_MAX = 1024
KINDS = ("node", "fencing", "resource", "attribute")
_RSC = re.compile(r"[A-Za-z0-9_][A-Za-z0-9_.:-]{0,199}\Z")  # a CIB id (a clone instance: ':N')
_TASK = re.compile(r"[a-z][a-z_-]{0,31}\Z")
# Our target agent's resource (iscsiha.plan.cib: target-NAME-lio in group target-NAME).
_TARGET_RSC = re.compile(r"target-(?P<name>.+)-lio\Z")
PCMK_EXEC_DONE = 0  # CRM_alert_status: the operation ran (its rc says how it went)
# Not failures: a recurring monitor cancelled (its resource demoted, stopped or moved:
# every failover cancels some) and an operation still running.
PCMK_EXEC_PENDING, PCMK_EXEC_CANCELLED = -1, 1
# A fencing alert has no variable for its action; CRM_alert_desc spells it.
_FENCE_ACTION = re.compile(r"Operation ([a-z]{1,16}) of ")
OCF_NOT_RUNNING = 7


class AlertInputError(Exception):
    """A CRM_alert_* variable that is missing or not what Pacemaker sends."""


@dataclass(frozen=True)
class PacemakerAlert:
    kind: str
    node: str  # the node the event is about
    desc: str
    timestamp: str | None  # ISO 8601; None when missing or unreadable (then: now)
    recipient: str
    task: str = ""
    rc: int | None = None
    rsc: str = ""
    interval_ms: int = 0
    target_rc: int | None = None
    status: int | None = None


def parse_env(env: Mapping[str, str]) -> PacemakerAlert:
    """The alert Pacemaker describes in ``env``; AlertInputError naming the bad value."""
    kind = _get(env, "kind")
    if kind not in KINDS:
        raise AlertInputError(f"{PREFIX}kind={clean(kind, 40)!r}: not one of {', '.join(KINDS)}")
    desc = clean(env.get(f"{PREFIX}desc", ""))
    recipient = clean(env.get(f"{PREFIX}recipient", ""), 200)
    timestamp = _timestamp(env.get(f"{PREFIX}timestamp", ""))
    if kind == "attribute":
        return PacemakerAlert(kind, "", desc, timestamp, recipient)
    node = _get(env, "node")
    if names.node_name_problem(node) is not None:
        raise AlertInputError(f"{PREFIX}node={clean(node, 80)!r}: not a node name "
                              f"({names.NODE_NAME_ALLOWED})")
    if kind == "node":
        return PacemakerAlert(kind, node, desc, timestamp, recipient)
    task = _get(env, "task")
    if _TASK.match(task) is None:
        raise AlertInputError(f"{PREFIX}task={clean(task, 40)!r}: not an operation name")
    rc = _int(env, "rc", -1000, 1000)
    if kind == "fencing":
        return PacemakerAlert(kind, node, desc, timestamp, recipient, task, rc)
    rsc = _get(env, "rsc")
    if _RSC.match(rsc) is None:
        raise AlertInputError(f"{PREFIX}rsc={clean(rsc, 80)!r}: not a resource id")
    return PacemakerAlert(kind, node, desc, timestamp, recipient, task, rc, rsc,
                          _int(env, "interval", 0, 2**31), _int(env, "target_rc", -1000, 1000),
                          _int(env, "status", -1000, 1000))


def _get(env: Mapping[str, str], name: str) -> str:
    value = env.get(PREFIX + name)
    if value is None or value == "":
        raise AlertInputError(f"{PREFIX}{name} is missing")
    if len(value) > VALUE_MAX:
        raise AlertInputError(f"{PREFIX}{name} is {len(value)} characters; at most {VALUE_MAX}")
    return value


def _int(env: Mapping[str, str], name: str, low: int, high: int) -> int:
    text = _get(env, name)
    negative = text.startswith("-")
    value = names.parse_decimal(text[1:] if negative else text, 0, max(-low, high))
    if value is not None and negative:
        value = -value
    if value is None or not low <= value <= high:
        raise AlertInputError(f"{PREFIX}{name}={clean(text, 40)!r}: not a whole number "
                              f"from {low} to {high}")
    return value


def _timestamp(text: str) -> str | None:
    """Pacemaker's time of the event in ISO 8601, or None: the format is the CIB's to
    set, so a value that does not parse is replaced by the agent's clock."""
    try:
        return datetime.strptime(text[:64], TIMESTAMP_FORMAT).isoformat()
    except ValueError:
        return None


def now_iso() -> str:
    return datetime.now(UTC).astimezone().isoformat()


@dataclass(frozen=True)
class Box:
    """What the rule needs to know about the box running the agent."""

    name: str
    is_dc: Callable[[], bool]  # asked only for node-member events
    quorate: Callable[[], bool | None]  # asked only for node-lost events; None: unknown


def may_report(alert: PacemakerAlert, box_name: str) -> bool:
    """Whether ``events_for`` could report anything, decided without asking the cluster:
    most alerts (a notify, a probe, the other box's view of a node) end here."""
    if alert.kind in ("node", "fencing"):
        return alert.node != box_name and (alert.kind == "fencing"
                                           or alert.desc in ("lost", "member"))
    if alert.kind == "resource":
        target = _TARGET_RSC.match(alert.rsc) is not None
        return _failed(alert) or (target and alert.task in ("start", "stop")
                                  and alert.status == PCMK_EXEC_DONE)
    return False


def _failed(alert: PacemakerAlert) -> bool:
    if alert.status in (PCMK_EXEC_CANCELLED, PCMK_EXEC_PENDING):
        return False
    return alert.status != PCMK_EXEC_DONE or alert.rc != alert.target_rc


def events_for(alert: PacemakerAlert, box: Box) -> list[Event]:
    """The events this box reports for ``alert`` (the module's rule); often none."""
    when = alert.timestamp or now_iso()
    if alert.kind == "node":
        return _node(alert, box, when)
    if alert.kind == "fencing":
        if alert.node == box.name:
            return []
        kind = "fenced" if alert.rc == 0 else "fence-failed"
        action = _FENCE_ACTION.match(alert.desc)
        return [make_event(kind, box.name, when, {
            "node": alert.node, "action": action[1] if action else alert.task,
            "rc": str(alert.rc),
            "description": alert.desc})]
    if alert.kind == "resource":
        event = _resource(alert, box, when)
        return [event] if event else []
    return []  # attribute alerts: the plan selects none


def _node(alert: PacemakerAlert, box: Box, when: str) -> list[Event]:
    if alert.node == box.name:
        return []
    state = alert.desc
    if state == "lost":
        return [make_event("node-lost", box.name, when, {"node": alert.node})]
    if state == "member" and box.is_dc():
        return [make_event("node-member", box.name, when, {"node": alert.node})]
    return []


def quorum_events(alert: PacemakerAlert, box: Box) -> list[Event]:
    """After a node-lost event: quorum-lost when this box's side has none. Asked after
    the node-lost event went out, as the answer may take a few seconds to settle."""
    if alert.kind != "node" or alert.desc != "lost" or alert.node == box.name:
        return []
    if box.quorate() is not False:
        return []
    return [make_event("quorum-lost", box.name, now_iso(),
                       {"after": f"box {alert.node} was lost"})]


def _resource(alert: PacemakerAlert, box: Box, when: str) -> Event | None:
    rsc = alert.rsc.split(":", 1)[0]  # a clone instance's id ends in ':N'
    details = {"resource": rsc, "operation": alert.task, "rc": str(alert.rc),
               "expected_rc": str(alert.target_rc), "interval_ms": str(alert.interval_ms),
               "description": alert.desc}
    if _failed(alert):
        return make_event("resource-failed", box.name, when, details)
    if alert.status != PCMK_EXEC_DONE:
        return None
    target = _TARGET_RSC.match(rsc)
    if target is None or names.object_name_problem(target["name"]) is not None:
        return None
    details["target"] = target["name"]
    if alert.task == "start":
        return make_event("target-started", box.name, when, details)
    if alert.task == "stop":
        return make_event("target-stopped", box.name, when, details)
    return None
