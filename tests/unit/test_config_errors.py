"""Each mistake in a hand-edited config is reported with its field, value and allowed values."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest

from iscsiha.errors import IscsihaError, Secret
from iscsiha.model.load import load_data, load_text
from iscsiha.views import format_reports

Mutation = Callable[[dict[str, Any]], None]


def _set(path: str, value: Any) -> Mutation:
    """Set a dotted path such as 'targets.0.auth.secret' in the example."""
    def apply(data: dict[str, Any]) -> None:
        *parents, last = path.split(".")
        obj: Any = data
        for key in parents:
            obj = obj[int(key)] if key.isdigit() else obj[key]
        if value is _DELETE:
            del obj[int(last) if last.isdigit() else last]
        elif isinstance(obj, list):
            obj[int(last)] = value
        else:
            obj[last] = value
    return apply


_DELETE = object()


def _add_node(data: dict[str, Any]) -> None:
    data["nodes"].append(dict(data["nodes"][0], name="san-c"))


def _export_twice(data: dict[str, Any]) -> None:
    data["targets"][1]["luns"].append({"lun": 1, "volume": "vmstore"})


def _duplicate_initiator(data: dict[str, Any]) -> None:
    data["targets"][0]["initiators"].append(data["targets"][0]["initiators"][0])


# (mistake, expected code, expected field, expected value shown)
CASES: list[tuple[str, Mutation, str, str, object]] = [
    ("no cluster table", _set("cluster", _DELETE), "missing", "cluster", None),
    ("cluster name with capitals", _set("cluster.name", "San_1"), "bad-name", "cluster.name",
     "San_1"),
    ("tiebreaker not a host", _set("cluster.tiebreaker", "qnetd host!"), "bad-value",
     "cluster.tiebreaker", "qnetd host!"),
    ("tiebreaker is a node", _set("cluster.tiebreaker", "10.10.0.11"), "tiebreaker-is-node",
     "cluster.tiebreaker", "10.10.0.11"),
    ("typo in a key", _set("cluster.nmae", "x"), "unknown-key", "cluster.nmae", "nmae"),
    ("one cluster link only", _set("networks.1.role", "storage"), "network-count", "networks",
     1),
    ("unknown network role", _set("networks.0.role", "heartbeat"), "bad-choice",
     "networks[0].role", "heartbeat"),
    ("subnet with host bits", _set("networks.0.subnet", "10.10.0.1/24"), "bad-subnet",
     "networks[0].subnet", "10.10.0.1/24"),
    ("overlapping subnets", _set("networks.1.subnet", "10.10.0.0/23"), "overlapping-subnets",
     "networks[0].subnet", "10.10.0.0/24"),
    ("duplicate network name", _set("networks.1.name", "link0"), "duplicate-network-name",
     "networks[1].name", "link0"),
    ("ping host on a cluster link", _set("networks.0.ping", ["10.10.0.1"]), "ping-not-storage",
     "networks[0].ping", ["10.10.0.1"]),
    ("ping host outside the storage subnet", _set("networks.3.ping", ["10.99.0.1"]),
     "ping-outside-subnet", "networks[3].ping[0]", "10.99.0.1"),
    ("three nodes", _add_node, "node-count", "nodes", 3),
    ("node name with a space", _set("nodes.0.name", "san a"), "bad-name", "nodes[0].name",
     "san a"),
    ("duplicate node name", _set("nodes.1.name", "san-a"), "duplicate-node-name",
     "nodes[1].name", "san-a"),
    ("node address outside its subnet", _set("nodes.0.addresses.link0", "10.99.0.11"),
     "address-outside-subnet", "nodes[0].addresses.link0", "10.99.0.11"),
    ("not an IP address", _set("nodes.0.addresses.link0", "10.10.0.300"), "bad-address",
     "nodes[0].addresses.link0", "10.10.0.300"),
    ("node without a replication address", _set("nodes.0.addresses.repl", _DELETE),
     "missing", "nodes[0].addresses.repl", None),
    ("address on an unknown network", _set("nodes.0.addresses.mgmt", "10.40.0.1"),
     "unknown-network", "nodes[0].addresses.mgmt", "mgmt"),
    ("two nodes share an address", _set("nodes.1.addresses.link0", "10.10.0.11"),
     "duplicate-address", "nodes[1].addresses.link0", "10.10.0.11"),
    ("BMC password too long for IPMI", _set("nodes.0.bmc.password", "x" * 21), "bad-secret",
     "nodes[0].bmc.password", Secret("x" * 21)),
    ("no BMC for fencing", _set("nodes.0.bmc", _DELETE), "missing", "nodes[0].bmc", None),
    ("volume name with capitals", _set("volumes.1.name", "DB"), "bad-name", "volumes[1].name",
     "DB"),
    ("reserved LVM name", _set("volumes.1.name", "snapshot"), "bad-name", "volumes[1].name",
     "snapshot"),
    ("duplicate volume name", _set("volumes.1.name", "vmstore"), "duplicate-volume-name",
     "volumes[1].name", "vmstore"),
    ("SI size unit", _set("volumes.1.size", "20GB"), "bad-size", "volumes[1].size", "20GB"),
    ("size without a unit", _set("volumes.1.size", "20"), "bad-size", "volumes[1].size", "20"),
    ("size below DRBD's minimum", _set("volumes.1.size", "1M"), "size-out-of-range",
     "volumes[1].size", "1M"),
    ("size as a bare number", _set("volumes.1.size", 20), "wrong-type", "volumes[1].size", 20),
    ("bad volume group name", _set("volumes.0.volume_group", "-vg"), "bad-name",
     "volumes[0].volume_group", "-vg"),
    ("pinned DRBD minor used twice", lambda d: (d["volumes"][0].update(drbd_minor=5),
                                                d["volumes"][1].update(drbd_minor=5)),
     "duplicate-drbd-minor", "volumes[1].drbd_minor", 5),
    ("DRBD minor out of range", _set("volumes.0.drbd_minor", 2_000_000), "out-of-range",
     "volumes[0].drbd_minor", 2_000_000),
    ("DRBD port below 1024", _set("targets.0.drbd_port", 80), "out-of-range",
     "targets[0].drbd_port", 80),
    ("DRBD port on a volume", _set("volumes.0.drbd_port", 7800), "unknown-key",
     "volumes[0].drbd_port", "drbd_port"),
    ("target name with a dot", _set("targets.0.name", "vm.store"), "bad-name",
     "targets[0].name", "vm.store"),
    ("IQN authority without a dot", _set("targets.0.iqn", "iqn.2026-11.test:t1"),
     "bad-iscsi-name", "targets[0].iqn", "iqn.2026-11.test:t1"),
    ("IQN with month 13", _set("targets.0.iqn", "iqn.2026-13.com.example:x"),
     "bad-iscsi-name", "targets[0].iqn", "iqn.2026-13.com.example:x"),
    ("IQN in capitals", _set("targets.0.iqn", "iqn.2026-11.com.Example:x"), "bad-iscsi-name",
     "targets[0].iqn", "iqn.2026-11.com.Example:x"),
    ("EUI name too short", _set("targets.0.iqn", "eui.02004567A425678"), "bad-iscsi-name",
     "targets[0].iqn", "eui.02004567A425678"),
    ("two targets with one IQN", _set("targets.1.iqn", "iqn.2026-11.com.example:san.vm"),
     "duplicate-target-iqn", "targets[1].iqn", "iqn.2026-11.com.example:san.vm"),
    ("initiator is not an iSCSI name", _set("targets.0.initiators.0", "hv1"),
     "bad-iscsi-name", "targets[0].initiators[0]", "hv1"),
    ("initiator listed twice", _duplicate_initiator, "duplicate-initiator-name",
     "targets[0].initiators[2]", "iqn.1993-08.org.debian:01:hv1"),
    ("no initiator may log in", _set("targets.0.initiators", []), "no-initiators",
     "targets[0].initiators", []),
    ("portal on a cluster link", _set("targets.0.portals", ["10.10.0.100"]),
     "portal-outside-storage", "targets[0].portals[0]", "10.10.0.100"),
    ("portal is a node's own address", _set("targets.0.portals", ["10.30.0.11"]),
     "portal-is-node-address", "targets[0].portals[0]", "10.30.0.11"),
    ("portal port out of range", _set("targets.0.portals", ["10.30.0.100:70000"]),
     "bad-portal", "targets[0].portals[0]", "10.30.0.100:70000"),
    ("two targets on one floating address", _set("targets.1.portals", ["10.30.0.100"]),
     "duplicate-floating-portal-address", "targets[1].portals", "10.30.0.100"),
    ("LUN number above 255", _set("targets.0.luns.0.lun", 256), "out-of-range",
     "targets[0].luns[0].lun", 256),
    ("LUN number used twice", _set("targets.0.luns.1.lun", 0), "duplicate-lun-number",
     "targets[0].luns[1].lun", 0),
    ("LUN of an unknown volume", _set("targets.0.luns.1.volume", "dbx"), "unknown-volume",
     "targets[0].luns[1].volume", "dbx"),
    ("volume exported by two targets", _export_twice, "duplicate-exported-volume",
     "targets[1].luns[1].volume", "vmstore"),
    ("target has no LUNs", _set("targets.0.luns", []), "no-luns", "targets[0].luns", []),
    ("preferred node unknown", _set("targets.0.preferred_node", "san-c"), "unknown-node",
     "targets[0].preferred_node", "san-c"),
    ("unknown failback policy", _set("targets.0.failback", "sometimes"), "bad-choice",
     "targets[0].failback", "sometimes"),
    ("unknown auth mode", _set("targets.0.auth.mode", "kerberos"), "bad-choice",
     "targets[0].auth.mode", "kerberos"),
    ("CHAP secret too short", _set("targets.0.auth.secret", "short"), "bad-secret",
     "targets[0].auth.secret", Secret("short")),
    ("CHAP secret too long for Microsoft", _set("targets.0.auth.secret", "x" * 17),
     "bad-secret", "targets[0].auth.secret", Secret("x" * 17)),
    ("mutual secret equals secret", _set("targets.0.auth.mutual_secret", "hv-Secret-0001"),
     "same-chap-secrets", "targets[0].auth.mutual_secret", Secret("hv-Secret-0001")),
    ("CHAP without a user", _set("targets.1.auth.user", _DELETE), "missing",
     "targets[1].auth.user", None),
    ("mutual settings in one-way CHAP", _set("targets.1.auth.mutual_user", "san"),
     "unused-setting", "targets[1].auth.mutual_user", "mutual_user"),
    ("discovery auth with a bad mode", _set("discovery_auth.mode", "yes"), "bad-choice",
     "discovery_auth.mode", "yes"),
]


@pytest.mark.parametrize(("mutate", "code", "field", "value"),
                         [c[1:] for c in CASES], ids=[c[0] for c in CASES])
def test_mistake_is_reported_with_field_and_value(
    example: dict[str, Any], mutate: Mutation, code: str, field: str, value: object
) -> None:
    mutate(example)
    with pytest.raises(IscsihaError) as info:
        load_data(example)
    found = [(r.code, r.field, r.value) for r in info.value.reports]
    assert (code, field, value) in found


def test_the_table_covers_at_least_thirty_distinct_mistakes() -> None:
    assert len({(c[2], c[3]) for c in CASES}) >= 30


def test_every_problem_is_reported_at_once(example: dict[str, Any]) -> None:
    example["volumes"][0]["size"] = "lots"
    example["targets"][0]["iqn"] = "iqn.bad"
    example["nodes"][1]["addresses"]["repl"] = "10.99.0.1"
    with pytest.raises(IscsihaError) as info:
        load_data(example)
    assert {r.field for r in info.value.reports} == {
        "volumes[0].size", "targets[0].iqn", "nodes[1].addresses.repl"}


def test_a_bad_volume_does_not_also_report_its_luns_as_unknown(example: dict[str, Any]) -> None:
    example["volumes"][1]["size"] = "lots"
    with pytest.raises(IscsihaError) as info:
        load_data(example)
    assert [r.code for r in info.value.reports] == ["bad-size"]


def test_secrets_are_never_shown_in_reports(example: dict[str, Any]) -> None:
    example["targets"][0]["auth"]["secret"] = "tooshort"
    with pytest.raises(IscsihaError) as info:
        load_data(example)
    text = format_reports(info.value.reports)
    assert "tooshort" not in text
    assert "<secret, 8 characters>" in text
    assert "Microsoft" in text


def test_toml_syntax_error_names_the_line() -> None:
    with pytest.raises(IscsihaError) as info:
        load_text("[cluster]\nname = \n", "bad.toml")
    (report,) = info.value.reports
    assert report.code == "config-syntax"
    assert report.field == "bad.toml"
    assert "line 2" in str(report.value)


def test_the_example_is_valid(example: dict[str, Any]) -> None:
    config = load_data(example)
    assert [t.name for t in config.targets] == ["vm", "backup"]
    assert config.volume("db").size == 20 * 1024**3
