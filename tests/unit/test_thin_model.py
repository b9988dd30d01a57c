"""The desired state's thin pools and thin volumes (model/pools.py): what loads, and every
refusal naming the key, the value and what is allowed."""

from __future__ import annotations

from typing import Any

import pytest

from iscsiha.errors import IscsihaError, Report
from iscsiha.model.load import load_data
from iscsiha.model.types import Pool

GIB = 2**30


def with_pool(example: dict[str, Any], **pool: Any) -> dict[str, Any]:
    """The example with one pool "thin" of 100G in data, db a thin volume of it."""
    example["pools"] = [{"name": "thin", "size": "100G", **pool}]
    next(v for v in example["volumes"] if v["name"] == "db")["pool"] = "thin"
    return example


def refused(data: dict[str, Any]) -> list[Report]:
    with pytest.raises(IscsihaError) as exc:
        load_data(data)
    return exc.value.reports


def test_a_pool_and_its_thin_volume_load_with_the_defaults(example: dict[str, Any]) -> None:
    config = load_data(with_pool(example))
    assert config.pools == (Pool("thin", "data", 100 * GIB, False, 80),)
    assert config.volume("db").pool == "thin" and config.volume("db").volume_group == "data"
    assert config.volume("vmstore").pool is None  # thick, as before
    assert config.thin_volumes("thin") == (config.volume("db"),)


def test_a_thin_volume_lives_in_its_pools_volume_group(example: dict[str, Any]) -> None:
    config = load_data(with_pool(example, volume_group="fast"))
    assert config.volume("db").volume_group == "fast"
    data = with_pool(example, volume_group="fast")
    next(v for v in data["volumes"] if v["name"] == "db")["volume_group"] = "data"
    (report,) = refused(data)
    assert (report.code, report.field, report.value) == (
        "pool-in-other-volume-group", "volumes[1].volume_group", "data")
    assert "'fast'" in report.allowed


def test_a_volume_naming_no_pool_of_the_desired_state_is_refused(
        example: dict[str, Any]) -> None:
    data = with_pool(example)
    data["volumes"][1]["pool"] = "thinn"
    (report,) = refused(data)
    assert (report.code, report.field, report.value, report.allowed) == (
        "unknown-pool", "volumes[1].pool", "thinn", "thin")
    del data["pools"]
    assert [r.code for r in refused(data)] == ["unknown-pool"]


@pytest.mark.parametrize("key, value, code", [
    ("name", "-thin", "bad-name"),
    ("name", "thin\n", "bad-name"),
    ("name", "snapshot", "bad-name"),
    ("name", 7, "wrong-type"),
    ("size", "-1G", "bad-size"),
    ("size", "2P", "size-out-of-range"),
    ("size", "15M", "size-out-of-range"),
    ("size", 100, "wrong-type"),
    ("volume_group", "--force", "bad-name"),
    ("overcommit", "yes", "wrong-type"),
    ("overcommit", 1, "wrong-type"),
    ("fill_alert_percent", 100, "out-of-range"),
    ("fill_alert_percent", 49, "out-of-range"),
    ("fill_alert_percent", True, "wrong-type"),
    ("chunk", "64K", "unknown-key"),
])
def test_hostile_pool_values_are_refused_naming_the_key(
        example: dict[str, Any], key: str, value: object, code: str) -> None:
    data = with_pool(example)
    data["pools"][0][key] = value
    reports = refused(data)
    assert (code, f"pools[0].{key}") in [(r.code, r.field) for r in reports]
    # The volume naming the broken pool is not told again that the pool is unknown,
    # unless the pool's name itself is what is wrong.
    if key != "name":
        assert "unknown-pool" not in [r.code for r in reports]


def test_a_hostile_pool_key_in_a_volume_is_refused(example: dict[str, Any]) -> None:
    data = with_pool(example)
    data["volumes"][1]["pool"] = ["thin"]
    assert [(r.code, r.field) for r in refused(data)] == [("wrong-type", "volumes[1].pool")]


def test_thin_volumes_larger_than_their_pool_are_refused_without_overcommit(
        example: dict[str, Any]) -> None:
    data = with_pool(example, size="10G")
    next(v for v in data["volumes"] if v["name"] == "vmstore")["pool"] = "thin"
    (report,) = refused(data)  # vmstore 100G + db 20G in a 10G pool
    assert (report.code, report.field, report.value) == ("pool-overcommitted",
                                                         "pools[0].size", "10G")
    assert "overcommit = true" in report.allowed and "120G" in report.allowed
    for said in ("pool thin", str(10 * GIB), str(120 * GIB), "vmstore", "db"):
        assert said in report.message
    data["pools"][0]["overcommit"] = True
    assert load_data(data).pools[0].overcommit


def test_thin_volumes_exactly_filling_the_pool_are_fine(example: dict[str, Any]) -> None:
    assert load_data(with_pool(example, size="20G")).pools[0].size == 20 * GIB


def test_two_pools_of_one_name_or_a_pool_named_like_a_volume_are_refused(
        example: dict[str, Any]) -> None:
    data = with_pool(example)
    data["pools"].append({"name": "thin", "size": "1G"})
    assert ("duplicate-pool-name", "pools[1].name") in [(r.code, r.field)
                                                       for r in refused(data)]
    data = with_pool(example)
    data["pools"][0]["name"] = data["volumes"][1]["pool"] = "backup"
    (report,) = refused(data)
    assert (report.code, report.value) == ("pool-name-taken", "backup")
    # In another volume group the names do not meet.
    data["pools"][0]["volume_group"] = "fast"
    assert load_data(data).volume("db").volume_group == "fast"


def test_pools_is_a_list_of_tables(example: dict[str, Any]) -> None:
    example["pools"] = {"name": "thin"}
    assert [(r.code, r.field) for r in refused(example)] == [("wrong-type", "pools")]
    example["pools"] = ["thin"]
    assert [(r.code, r.field) for r in refused(example)] == [("wrong-type", "pools[0]")]


def test_a_pool_reads_exactly_its_schema_keys(example: dict[str, Any]) -> None:
    from iscsiha.model.fields import POOL_KEYS

    data = with_pool(example)
    data["pools"][0]["zero"] = True
    (report,) = refused(data)
    assert (report.code, report.allowed) == ("unknown-key", ", ".join(sorted(POOL_KEYS)))
