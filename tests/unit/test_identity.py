"""DRBD ports, volume numbers and minors are stable: a re-plan never renumbers an
exported volume."""

from __future__ import annotations

from typing import Any

from iscsiha.commands.config import plan
from iscsiha.model.identity import RESERVATIONS_VOLUME, DrbdResource, DrbdSlot, allocate_drbd
from iscsiha.model.load import load_data
from iscsiha.model.types import Config


def _config(example: dict[str, Any], luns: dict[str, list[str]],
            minors: dict[str, int] | None = None, ports: dict[str, int] | None = None
            ) -> Config:
    """The example with targets exporting ``luns`` (target -> volumes, LUN 0 upwards)."""
    names = sorted({v for vs in luns.values() for v in vs} | {"spare"})
    example["volumes"] = [{"name": n, "size": "1G", **(
        {"drbd_minor": minors[n]} if minors and n in minors else {})} for n in names]
    template = example["targets"][0]
    example["targets"] = [
        {**template, "name": t, "iqn": f"iqn.2026-11.com.example:{t}",
         "portals": [f"10.30.0.{100 + i}"],
         "luns": [{"lun": n, "volume": v} for n, v in enumerate(vs)],
         **({"drbd_port": ports[t]} if ports and t in ports else {})}
        for i, (t, vs) in enumerate(luns.items())]
    return load_data(example)


def test_each_target_gets_a_port_and_its_volumes_numbers_and_minors(
        example: dict[str, Any]) -> None:
    res = allocate_drbd(_config(example, {"vm": ["a", "b"], "web": ["c"]}))
    # Each new target's reservations volume takes a minor after every LUN's.
    assert res == {"vm": DrbdResource(7789, {"a": DrbdSlot(0, 0), "b": DrbdSlot(1, 1)}, 3),
                   "web": DrbdResource(7790, {"c": DrbdSlot(0, 2)}, 4)}


def test_an_added_lun_keeps_every_existing_number_minor_and_port(
        example: dict[str, Any]) -> None:
    first = allocate_drbd(_config(example, {"vm": ["b", "c"], "web": ["d"]}))
    second = allocate_drbd(_config(example, {"vm": ["a", "b", "c"], "web": ["d"],
                                             "new": ["x"]}), first)
    assert second["vm"].volumes["b"] == first["vm"].volumes["b"]
    assert second["vm"].volumes["c"] == first["vm"].volumes["c"]
    assert second["web"] == first["web"]
    assert second["vm"].volumes["a"] == DrbdSlot(2, 5)  # next free number and minor
    assert second["new"] == DrbdResource(7791, {"x": DrbdSlot(0, 6)}, 7)
    assert second["vm"].reservations == first["vm"].reservations == 3


def test_a_removed_lun_keeps_its_minor_from_new_volumes_until_the_next_plan(
        example: dict[str, Any]) -> None:
    # Its resource file still claims the minor while the apply that drops it runs.
    first = allocate_drbd(_config(example, {"vm": ["a", "b", "c"]}))
    second = allocate_drbd(_config(example, {"vm": ["a", "c", "d"]}), first)
    assert second["vm"].volumes["a"] == first["vm"].volumes["a"]
    assert second["vm"].volumes["c"] == first["vm"].volumes["c"]
    assert second["vm"].volumes["d"] == DrbdSlot(1, 4)
    third = allocate_drbd(_config(example, {"vm": ["a", "c", "d"], "new": ["e"]}),
                          {"vm": second["vm"]})
    assert third["new"].volumes["e"].minor == 1  # b's, free once the CIB forgot it


def test_a_deleted_target_keeps_its_minors_and_port_from_a_new_target(
        example: dict[str, Any]) -> None:
    first = allocate_drbd(_config(example, {"old": ["a", "b"]}))
    second = allocate_drbd(_config(example, {"new": ["c"]}), first)
    assert second["new"] == DrbdResource(7790, {"c": DrbdSlot(0, 3)}, 4)


def test_a_volume_exported_by_another_target_gets_a_new_slot(
        example: dict[str, Any]) -> None:
    first = allocate_drbd(_config(example, {"vm": ["a", "b"], "web": ["c"]}))
    second = allocate_drbd(_config(example, {"vm": ["a"], "web": ["c", "b"]}), first)
    assert second["web"].volumes["b"] == DrbdSlot(1, 5)


def test_pinned_values_win_and_are_never_given_to_others(example: dict[str, Any]) -> None:
    res = allocate_drbd(_config(example, {"vm": ["a", "b"]}, minors={"b": 0, "spare": 1},
                                ports={"vm": 7800}))
    assert res["vm"] == DrbdResource(7800, {"a": DrbdSlot(0, 2), "b": DrbdSlot(1, 0)}, 3)


def test_a_pin_that_takes_a_previous_minor_moves_only_the_unpinned_volume(
        example: dict[str, Any]) -> None:
    first = allocate_drbd(_config(example, {"vm": ["a", "b"]}))
    second = allocate_drbd(_config(example, {"vm": ["a", "b"]}, minors={"b": 0}), first)
    assert second["vm"].volumes["b"].minor == 0
    assert second["vm"].volumes["a"].minor == 3  # not b's old one nor the reservations
    assert {s.number for s in second["vm"].volumes.values()} == {0, 1}


def test_replanning_from_the_previous_cib_keeps_every_volume(example: dict[str, Any]) -> None:
    before = plan(load_data(example))
    example["volumes"].insert(0, {"name": "aaa-first", "size": "1G"})
    example["targets"][0]["luns"].append({"lun": 2, "volume": "aaa-first"})
    after = plan(load_data(example), previous_cib=before.cib)
    for name, slot in before.slots.items():
        assert after.slots[name] == slot
    assert after.slots["aaa-first"] == DrbdSlot(2, 5)  # after the LUNs and reservations
    assert after.drbd["vm"].reservations == before.drbd["vm"].reservations
    assert after.drbd["vm"].port == before.drbd["vm"].port


def test_replanning_without_previous_state_is_deterministic(example: dict[str, Any]) -> None:
    assert plan(load_data(example)) == plan(load_data(example))


def test_a_target_running_without_a_reservations_volume_is_not_given_one(
        example: dict[str, Any]) -> None:
    # Made before reservations volumes existed: adding one would need its resource
    # reshaped while it runs; it keeps running as it was.
    first = allocate_drbd(_config(example, {"vm": ["a"]}))
    old = {"vm": DrbdResource(first["vm"].port, first["vm"].volumes)}
    again = allocate_drbd(_config(example, {"vm": ["a"], "web": ["b"]}), old)
    assert again["vm"].reservations is None
    assert again["web"].reservations not in (None, again["vm"].volumes["a"].minor)


def test_the_reservations_volume_number_is_never_a_lun_s(example: dict[str, Any]) -> None:
    res = allocate_drbd(_config(example, {"vm": ["a", "b"]}))
    slot = res["vm"].reservations_slot
    assert slot is not None and slot.number == RESERVATIONS_VOLUME
    assert RESERVATIONS_VOLUME not in {s.number for s in res["vm"].volumes.values()}
