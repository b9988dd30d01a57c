"""The desired state's keys are spelled once, in iscsiha.model.fields: the loader reads
exactly each table's keys there, and every key the console offers is one of them."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from iscsiha.console import edits
from iscsiha.errors import IscsihaError
from iscsiha.model import fields as k
from iscsiha.model.load import load_data
from iscsiha.model.types import AuthMode
from tests.unit.console_fakes import Harness

NOT_A_KEY = "not-a-key"
# Where each table is in the example, and the keys the model gives it. A node's
# addresses are keyed by network name instead, which the loader checks against the
# networks.
TABLES: list[tuple[tuple[str | int, ...], tuple[str, ...]]] = [
    ((), k.TOP_KEYS),
    ((k.CLUSTER,), k.CLUSTER_KEYS),
    ((k.NETWORKS, 0), k.NETWORK_KEYS),
    ((k.NODES, 0), k.NODE_KEYS),
    ((k.NODES, 0, k.BMC), k.BMC_KEYS),
    ((k.VOLUMES, 0), k.VOLUME_KEYS),
    ((k.TARGETS, 0), k.TARGET_KEYS),
    ((k.TARGETS, 0, k.LUNS, 0), k.LUN_KEYS),
    ((k.TARGETS, 0, k.AUTH), k.AUTH_KEYS),  # mutual-chap: every auth key is read
    ((k.DISCOVERY_AUTH,), k.AUTH_KEYS),
]
# (console path, its `get`/`set` group) -> the table whose keys the group shows.
CONSOLE_GROUPS = [
    ("/cluster", "cluster", k.CLUSTER_KEYS),
    ("/cluster/discovery_auth", "auth", k.AUTH_KEYS),
    ("/nodes/san-a", "node", k.NODE_KEYS),
    ("/network/storage", "network", k.NETWORK_KEYS),
    ("/volumes/db", "volume", k.VOLUME_KEYS),
    ("/targets/vm", "target", k.TARGET_KEYS),
    ("/targets/vm/auth", "auth", k.AUTH_KEYS),
]


def path_of(where: tuple[str | int, ...]) -> str:
    """The loader's name for a place in the document: targets[0].luns[0]."""
    path = ""
    for step in where:
        path += f"[{step}]" if isinstance(step, int) else (f".{step}" if path else step)
    return path


def table_at(data: dict[str, Any], where: tuple[str | int, ...]) -> dict[str, Any]:
    table: Any = data
    for step in where:
        table = table[step]
    assert isinstance(table, dict)
    return table


@pytest.mark.parametrize(("where", "keys"), TABLES, ids=[path_of(w) or "top" for w, _ in TABLES])
def test_the_loader_reads_exactly_each_table_s_keys(
        example: dict[str, Any], where: tuple[str | int, ...], keys: tuple[str, ...]) -> None:
    # Mutual CHAP here too, so that the loader reads every auth key of discovery_auth.
    example[k.DISCOVERY_AUTH].update({k.MODE: AuthMode.MUTUAL_CHAP.value, k.MUTUAL_USER: "san",
                                      k.MUTUAL_SECRET: "san-Discovery-1"})
    table_at(example, where)[NOT_A_KEY] = 1
    with pytest.raises(IscsihaError) as caught:
        load_data(example)
    unknown = [r for r in caught.value.reports if r.code == "unknown-key"]
    field = f"{path_of(where)}.{NOT_A_KEY}" if where else NOT_A_KEY
    assert [r.field for r in unknown] == [field]
    # The loader lists what it read: exactly the model's keys for this table.
    assert unknown[0].allowed == ", ".join(sorted(keys))


def offered(node: Any, group: str) -> set[str]:
    """The keys `get GROUP <TAB>` and `set GROUP <TAB>` offer at ``node``."""
    read = node.ui_complete_get({"group": group}, "", "")
    written = node.ui_complete_set({"group": group}, "", "")
    return {c.strip() for c in read} | {c.strip().removesuffix("=") for c in written}


@pytest.mark.parametrize(("path", "group", "keys"), CONSOLE_GROUPS,
                         ids=[p for p, _, _ in CONSOLE_GROUPS])
def test_every_key_the_console_completes_is_one_the_model_reads(
        tmp_path: Path, path: str, group: str, keys: tuple[str, ...]) -> None:
    node = Harness(tmp_path).shell.root.get_node(path)
    shown = offered(node, group)
    assert shown  # the group is there and offers something
    assert shown <= set(keys), shown - set(keys)


def test_the_keys_the_console_edits_are_the_model_s() -> None:
    assert set(edits.TARGET_SETTINGS).issubset(k.TARGET_KEYS)
    assert edits.SECRET_KEYS.issubset(k.CHAP_KEYS)
    assert edits.AUTH_KEYS is k.AUTH_KEYS  # `set auth` takes the model's list, not a copy
