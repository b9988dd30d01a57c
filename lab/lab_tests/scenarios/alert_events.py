"""The alerts a webhook receiver got during a fault, read as the tests check them: each
event once, from the box that must send it, in the order the cluster lived them."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from iscsiha_lab.alert_receiver import received
from iscsiha_lab.pair import TARGETS

# The last alerts (resync finished) are sent in the background, one per volume, after
# the scenario found both boxes UpToDate; this bounds their arrival.
RESYNC_ARRIVAL_S = 480.0


def events_since(out: Path, t: float) -> list[dict[str, Any]]:
    return [e for e in received(out) if e["at"] >= t]


def keyed(events: list[dict[str, Any]], kind: str, box: str | None = None,
          **details: str) -> list[dict[str, Any]]:
    return [e for e in events if e["kind"] == kind and box in (None, e["box"])
            and all(e["details"].get(k) == v for k, v in details.items())]


def index(events: list[dict[str, Any]], kind: str, box: str | None = None,
          **details: str) -> int:
    """Where the one event of ``kind`` (from ``box``, with ``details``) arrived; fails
    unless exactly one did."""
    found = [i for i, e in enumerate(events) if e in keyed(events, kind, box, **details)]
    assert len(found) == 1, f"{kind} {box} {details}: {len(found)} times in {summary(events)}"
    return found[0]


def resyncs(events: list[dict[str, Any]], target: str) -> dict[str, tuple[int, int]]:
    """Minor -> where its resync's started and finished alerts arrived, for each volume of
    ``target``'s resource that resynced (its LUNs and its reservations volume: DRBD runs
    the handlers per volume); each once, and at least one volume."""
    minors = {e["details"].get("minor") for e in keyed(events, "drbd-resync-started",
                                                        resource=target)}
    assert minors, f"no resync of {target} in {summary(events)}"
    return {m: (index(events, "drbd-resync-started", resource=target, minor=m),
                index(events, "drbd-resync-finished", resource=target, minor=m))
            for m in sorted(str(m) for m in minors)}


def resynced(events: list[dict[str, Any]]) -> bool:
    """Every target resynced something, and every volume that began has finished."""
    begun = {(e["details"].get("resource"), e["details"].get("minor"))
             for e in keyed(events, "drbd-resync-started")}
    done = {(e["details"].get("resource"), e["details"].get("minor"))
            for e in keyed(events, "drbd-resync-finished")}
    return {r for r, _ in begun} >= set(TARGETS) and begun <= done


def summary(events: list[dict[str, Any]]) -> list[str]:
    return [f"{e['box']} {e['kind']} {e['details']}" for e in events]
