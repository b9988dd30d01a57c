"""A box's record of its part in the pair's rolling upgrade (docs/upgrade.md).

`iscsiha upgrade pair` stages the new root on a box with a record saying so, in
/var/lib/iscsiha, written before the state is carried: the old root and the new one
both hold it. Whichever root the box comes back on, iscsiha-upgrade-resume.service
reads it, says how the box's part ended (upgraded, or rolled back to the old root),
takes the box out of the standby the upgrade put it in, and writes that down; the
other box reads it through the upgrade-state step.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass
from typing import Literal

from iscsiha.errors import IscsihaError, bounded, clip
from iscsiha.model.bootenv import SLOTS, Slot
from iscsiha.model.root_image import KIND, MANIFEST_FORMAT, Release, json_object, release_of

PATH = "/var/lib/iscsiha/pair-upgrade.json"
FORMAT = 1
NOTE_MAX = 2000
State = Literal["staged", "upgraded", "rolled-back"]
STATES: tuple[State, ...] = ("staged", "upgraded", "rolled-back")


@dataclass(frozen=True)
class Record:
    state: State
    slot: Slot  # the slot the new root was staged in
    release: Release  # what it holds
    from_version: str  # what the box ran when it was staged
    left_standby: bool = False
    note: str = ""  # how the box's part ended, in words


def record_json(record: Record) -> str:
    data = asdict(record)
    data["release"] = {"format": MANIFEST_FORMAT, "kind": KIND, **asdict(record.release)}
    return json.dumps({"format": FORMAT, **data}, indent=2) + "\n"


def parse_record(text: str, where: str) -> Record:
    """The record as written by record_json; anything else is refused, naming the field."""
    data = json_object(text, where, "a pair-upgrade record", "bad-upgrade-record")
    if data.get("format") != FORMAT:
        raise IscsihaError.single("bad-upgrade-record", "file", where,
                                  f"a JSON object of format {FORMAT}", clip(text.strip(), 80))
    state, slot = data.get("state"), data.get("slot")
    if state not in STATES:
        raise IscsihaError.single("bad-upgrade-record", f"{where}: state", bounded(state),
                                  ", ".join(STATES))
    if slot not in SLOTS:
        raise IscsihaError.single("bad-upgrade-record", f"{where}: slot", bounded(slot),
                                  "a or b")
    release_data = data.get("release")
    if not isinstance(release_data, dict):
        raise IscsihaError.single("bad-upgrade-record", f"{where}: release",
                                  bounded(release_data), "a release (JSON object)")
    release = release_of(release_data, f"{where}: release")
    from_version, note, left = data.get("from_version"), data.get("note"), data.get(
        "left_standby")
    if not isinstance(from_version, str) or not 0 < len(from_version) <= 64:
        raise IscsihaError.single("bad-upgrade-record", f"{where}: from_version",
                                  bounded(from_version), "a release number")
    if not isinstance(note, str) or len(note) > NOTE_MAX or not note.isprintable():
        raise IscsihaError.single("bad-upgrade-record", f"{where}: note", bounded(note),
                                  f"printable text of at most {NOTE_MAX} characters")
    if not isinstance(left, bool):
        raise IscsihaError.single("bad-upgrade-record", f"{where}: left_standby",
                                  bounded(left), "true or false")
    return Record(state, "a" if slot == "a" else "b", release, from_version, left, note)


def outcome(record: Record, booted: Slot, good: Slot, trial: str) -> Record | None:
    """How the box's part ended, seen from a boot of its good slot; None while it is not
    settled (booted on trial, not yet marked good: it is marked, or it reboots)."""
    if booted != good:
        return None
    if booted == record.slot:
        return Record("upgraded", record.slot, record.release, record.from_version,
                      note=f"runs iscsiha {record.release.version} from slot {booted}")
    why = {"failed": "its trial boot did not come up healthy",
           "armed": "its trial boot was never tried (still armed)"}.get(
        trial, "the new slot is not the good one")
    return Record("rolled-back", record.slot, record.release, record.from_version,
                  note=f"back on slot {booted} (iscsiha {record.from_version}): the new root "
                       f"in slot {record.slot} (iscsiha {record.release.version}) was not "
                       f"kept: {why}")
