"""apply with thin pools: pools made on both boxes before their volumes, thin volumes made
thin (never zeroed), pools grown, and what apply refuses from both boxes' facts
(commands/apply_pools.py)."""

from __future__ import annotations

import tomllib
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest

from iscsiha.commands.apply_checks import check_facts
from iscsiha.commands.apply_pools import check_pools, pool_overhead
from iscsiha.errors import IscsihaError
from iscsiha.model.identity import RESERVATIONS_SIZE
from iscsiha.model.load import load_data
from iscsiha.model.toml_dump import dumps
from iscsiha.protocol.messages import Facts, PoolFacts
from tests.unit.apply_fakes import World, desired

GIB = 1 << 30
EXTENT = 4 << 20


def thin_desired(pool_size: str = "4G", overcommit: bool = False, **volumes: str) -> str:
    """Target vm exporting vmstore (thick, 1G) and the thin ``volumes`` of pool "thin"."""
    data = tomllib.loads(desired({"vmstore": "1G", **volumes}, {"vm": ["vmstore"]}))
    data["pools"] = [{"name": "thin", "size": pool_size, "overcommit": overcommit}]
    for v in data["volumes"]:
        if v["name"] in volumes:
            v["pool"] = "thin"
    return dumps(data)


@pytest.fixture
def world(tmp_path: Path) -> World:
    return World(tmp_path)


def lvcreates(world: World) -> list[list[list[str]]]:
    return [[c for c in node.calls if c[0].endswith("lvcreate")] for node in world.nodes]


def test_the_pool_is_made_on_both_boxes_before_its_thin_volume(world: World) -> None:
    world.apply(thin_desired(db="2G"))
    for node, creates in zip(world.nodes, lvcreates(world), strict=True):
        assert node.pools == {"data/thin"} and node.thin == {"data/db": "thin"}
        assert node.lvs == {"data/vmstore": GIB, "data/thin": 4 * GIB, "data/db": 2 * GIB,
                            "data/vm.pr": RESERVATIONS_SIZE}
        made = [c[c.index("-n") + 1] for c in creates]
        assert made.index("thin") < made.index("db")
        pool = next(c for c in creates if "thin-pool" in c)
        # Tagged like the volumes, and zeroing what it hands out (see Lvm.create_pool).
        assert pool[pool.index("--addtag"):][:2] == ["--addtag", "iscsiha"]
        assert pool[pool.index("-Z") + 1] == "y"
        db = next(c for c in creates if c[c.index("-n") + 1] == "db")
        assert db[db.index("--thinpool") + 1] == "thin" and "-Z" not in db
        assert "--addtag" in db
        # Zeroing the whole thin volume would take its full size from the pool.
        assert not [c for c in node.calls if c[0].endswith("blkdiscard") and
                    c[-1] == "/dev/data/db"]


def test_a_pool_is_not_taken_for_a_volume_to_delete_nor_made_twice(world: World) -> None:
    text = thin_desired(db="2G")
    world.apply(text)
    before = lvcreates(world)
    changes = world.apply(text)  # the tagged pool is no volume: nothing to --delete
    assert changes.create == () and changes.delete == ()
    assert lvcreates(world) == before


def test_a_grown_pool_is_extended_on_both_boxes(world: World) -> None:
    world.apply(thin_desired(db="2G"))
    world.apply(thin_desired("8G", db="2G"))
    for node in world.nodes:
        assert node.lvs["data/thin"] == 8 * GIB
        assert ["/usr/sbin/lvextend", "-q", "-L", f"{8 * GIB}b", "--", "data/thin"] \
            in node.calls


def test_a_pool_does_not_shrink(world: World) -> None:
    world.apply(thin_desired("8G", db="2G"))
    with pytest.raises(IscsihaError) as exc:
        world.apply(thin_desired("4G", db="2G"))
    assert {r.code for r in exc.value.reports} == {"pool-shrink"}
    assert all(node.lvs["data/thin"] == 8 * GIB for node in world.nodes)


def test_a_volume_does_not_turn_thin_nor_thick(world: World) -> None:
    world.apply(thin_desired(db="2G"))
    thick = dumps({**tomllib.loads(thin_desired(db="2G")), "volumes": [
        {"name": "vmstore", "size": "1G"}, {"name": "db", "size": "2G"}]})
    with pytest.raises(IscsihaError) as exc:
        world.apply(thick)
    report = exc.value.reports[0]
    assert {r.code for r in exc.value.reports} == {"volume-changes-provisioning"}
    assert report.value == "db" and "thin in pool thin" in report.message \
        and "thick" in report.message
    data = tomllib.loads(thin_desired(db="2G"))
    data["volumes"][0]["pool"] = "thin"  # vmstore was made thick
    with pytest.raises(IscsihaError) as exc:
        world.apply(dumps(data))
    assert [r.value for r in exc.value.reports] == ["vmstore", "vmstore"]  # on each box


def facts(pools: tuple[PoolFacts, ...] = (), free: int = 1 << 40,
          lvs: dict[str, int | None] | None = None,
          thin: tuple[tuple[str, str], ...] = ()) -> dict[str, Facts]:
    none: dict[str, int | None] = {"vmstore": None, "db": None, "backup": None}
    one = Facts(vgs={"data": (free, EXTENT)}, lvs={**none, **(lvs or {})}, tagged={}, drbd={},
                pools=pools, thin=thin)
    return {"san-a": one, "san-b": one}


def config_with(example: dict[str, Any], pool_size: str, overcommit: bool = False) -> Any:
    example["pools"] = [{"name": "thin", "size": pool_size, "overcommit": overcommit}]
    next(v for v in example["volumes"] if v["name"] == "db")["pool"] = "thin"
    return load_data(example)


def test_a_new_pool_takes_its_size_and_metadata_from_the_volume_group(
        example: dict[str, Any]) -> None:
    config = config_with(example, "100G")
    changes = check_pools(config, config.volumes, facts())
    assert [p.name for p in changes.create] == ["thin"]
    assert changes.need == {n: {"data": 100 * GIB + pool_overhead(100 * GIB)}
                            for n in ("san-a", "san-b")}
    # The thin volume takes nothing from the group, the thick ones their size.
    thick = 100 * GIB + 500 * GIB
    free = thick + changes.need["san-a"]["data"]
    check_facts(config, config.volumes, set(), facts(free=free), changes.need)
    with pytest.raises(IscsihaError) as exc:
        check_facts(config, config.volumes, set(), facts(free=free - 1), changes.need)
    assert {(r.code, r.field) for r in exc.value.reports} == {("no-space", "volume_group")}


def test_a_name_an_lv_outside_the_cluster_has_is_no_pool(example: dict[str, Any]) -> None:
    config = config_with(example, "100G")
    with pytest.raises(IscsihaError) as exc:
        check_pools(config, config.volumes, facts(lvs={"thin": GIB}))
    assert [(r.code, r.value) for r in exc.value.reports] == [("pool-exists", "thin")] * 2


def test_a_pool_found_in_another_volume_group_is_refused(example: dict[str, Any]) -> None:
    config = config_with(example, "100G")
    elsewhere = (PoolFacts("thin", "fast", 100 * GIB, 1.0, 1.0),)
    one = replace(facts(elsewhere)["san-a"], vgs={"data": (1 << 40, EXTENT)})
    with pytest.raises(IscsihaError) as exc:
        check_pools(config, config.volumes, {"san-a": one})
    assert [r.code for r in exc.value.reports] == ["pool-changes-volume-group"]


def test_thin_volumes_in_whole_extents_must_fit_a_pool_without_overcommit(
        example: dict[str, Any]) -> None:
    # db is 20G; a pool of exactly 20G holds it. Volumes are whole MiB, extents 4 MiB:
    # a 20481M pool rounds up to 20484M, so both fit; the check works in extents.
    config = config_with(example, "20G")
    assert check_pools(config, config.volumes, facts()).create
    big = replace(config, volumes=tuple(replace(v, size=v.size + 1 if v.pool else v.size)
                                        for v in config.volumes))
    with pytest.raises(IscsihaError) as exc:
        check_pools(big, big.volumes, facts())
    assert [r.code for r in exc.value.reports] == ["pool-no-space"] * 2
    over = config_with(example, "20G", overcommit=True)
    over = replace(over, volumes=tuple(replace(v, size=v.size * 4 if v.pool else v.size)
                                       for v in over.volumes))
    assert check_pools(over, over.volumes, facts()).create


def test_the_dry_run_says_which_pool_is_made_or_grown_and_which_volume_is_thin(
        world: World) -> None:
    from iscsiha.commands.apply import check
    from iscsiha.commands.apply_preview import preview

    def dry_run(text: str) -> list[str]:
        return preview(check(world.env, load_data(tomllib.loads(text)), frozenset(),
                             lambda _: None))

    assert dry_run(thin_desired(db="2G"))[:3] == [
        "thin pool thin: create, 4G in data on both boxes",
        "volume vmstore: create, 1G in data on both boxes",
        "volume db: create, 2G thin in pool thin on both boxes"]
    world.apply(thin_desired(db="2G"))
    assert dry_run(thin_desired("5G", db="2G"))[0] == "thin pool thin: grow to 5G"
    assert all(node.lvs["data/thin"] == 4 * GIB for node in world.nodes)  # nothing changed
