"""DRBD minors and ports are stable: a re-plan never renumbers an existing volume."""

from __future__ import annotations

from typing import Any

from iscsiha.commands.config import plan
from iscsiha.model.identity import DrbdSlot, allocate_drbd
from iscsiha.model.load import load_data
from iscsiha.model.types import Volume

G = 1024**3


def vol(name: str, minor: int | None = None, port: int | None = None) -> Volume:
    return Volume(name, G, "data", minor, port)


def test_new_volumes_get_the_lowest_free_minor_and_port() -> None:
    slots = allocate_drbd([vol("a"), vol("b"), vol("c")])
    assert slots == {"a": DrbdSlot(0, 7789), "b": DrbdSlot(1, 7790), "c": DrbdSlot(2, 7791)}


def test_previous_slots_are_kept_when_a_volume_is_added_in_front() -> None:
    first = allocate_drbd([vol("b"), vol("c")])
    second = allocate_drbd([vol("a"), vol("b"), vol("c")], first)
    assert second["b"] == first["b"] and second["c"] == first["c"]
    assert second["a"] == DrbdSlot(2, 7791)


def test_a_deleted_volume_frees_its_slot_without_moving_the_others() -> None:
    first = allocate_drbd([vol("a"), vol("b"), vol("c")])
    second = allocate_drbd([vol("a"), vol("c"), vol("d")], first)
    assert second["a"] == first["a"] and second["c"] == first["c"]
    assert second["d"] == first["b"]


def test_pinned_values_win_and_are_never_given_to_others() -> None:
    slots = allocate_drbd([vol("a"), vol("b", minor=0, port=7789)])
    assert slots["b"] == DrbdSlot(0, 7789)
    assert slots["a"] == DrbdSlot(1, 7790)


def test_a_pin_that_takes_a_previous_slot_moves_only_the_unpinned_volume() -> None:
    previous = {"a": DrbdSlot(0, 7789), "b": DrbdSlot(1, 7790)}
    slots = allocate_drbd([vol("a"), vol("b", minor=0)], previous)
    assert slots["b"].minor == 0
    assert slots["a"].minor not in (0,) and slots["a"] != slots["b"]


def test_replanning_from_the_previous_cib_keeps_every_volume(example: dict[str, Any]) -> None:
    before = plan(load_data(example))
    example["volumes"].insert(0, {"name": "aaa-first", "size": "1G"})
    after = plan(load_data(example), previous_cib=before.cib)
    for name, slot in before.slots.items():
        assert after.slots[name] == slot
    assert after.slots["aaa-first"] == DrbdSlot(3, 7792)


def test_replanning_without_previous_state_is_deterministic(example: dict[str, Any]) -> None:
    assert plan(load_data(example)) == plan(load_data(example))
