"""tools/scale-sim's pure part: the CIB of several pairs in one cluster, and the reading of
crm_simulate's transition graphs (recorded from trixie's crm_simulate 3.0.0 by the tool's
own `--keep`, 4 boxes with 2 targets per pair)."""

from __future__ import annotations

import shutil
import subprocess
import xml.etree.ElementTree as ET
from collections import Counter
from pathlib import Path

import pytest
from iscsiha_lab import scale_cib
from iscsiha_lab.scale_cib import ClusterShape, configuration, pair_configs, whole_cib
from iscsiha_lab.scale_sim import (
    Bounds,
    Timed,
    box_counts,
    pacemaker_version,
    parse_graph,
    repeat,
    reusable,
    spread,
)

from iscsiha.errors import IscsihaError
from iscsiha.plan import cib
from lab_tests.conftest import skip_or_fail

DATA = Path(__file__).parent / "data"
BOX_LOSS_GRAPH = DATA / "crm_simulate-3.0.0-4-boxes-box01-lost.graph.xml"
SETTLED_GRAPH = DATA / "crm_simulate-3.0.0-4-boxes-settled.graph.xml"
FOUR_BOXES = ClusterShape(boxes=4, targets_per_pair=3)


def _configuration(shape: ClusterShape = FOUR_BOXES) -> ET.Element:
    return configuration(shape, pair_configs(shape))


def _node_pairs(conf: ET.Element) -> dict[str, str]:
    """Node name -> the pair its permanent attribute names."""
    return {node.get("uname", ""): cib.nvpairs(node)[scale_cib.PAIR_ATTRIBUTE]
            for node in conf.iter("node")}


def test_each_target_s_resources_are_kept_on_the_boxes_of_its_pair() -> None:
    conf = _configuration()
    pairs = _node_pairs(conf)
    assert sorted(Counter(pairs.values()).values()) == [2, 2]  # two boxes in each pair
    rules = {loc.get("rsc"): loc for loc in conf.iter("rsc_location") if loc.find("rule")}
    for config in pair_configs(FOUR_BOXES):
        for target in config.targets:
            home = pairs[target.preferred_node]
            for rsc in (cib.drbd_clone_id(target.name), cib.target_group_id(target.name)):
                loc = rules[rsc]
                rule = loc.find("rule")
                assert rule is not None and rule.get("score") == "-INFINITY"
                (expr,) = rule.findall("expression")
                assert (expr.get("attribute"), expr.get("operation"), expr.get("value")) == (
                    scale_cib.PAIR_ATTRIBUTE, "ne", home)
                # Not probed on the other pairs' boxes.
                assert loc.get("resource-discovery") == "never"
            # Both boxes of the target's own DRBD resource are in that pair.
            assert {pairs[n.name] for n in config.cluster.nodes} == {home}


def test_probing_everywhere_leaves_out_resource_discovery() -> None:
    conf = _configuration(ClusterShape(4, 3, probe_pair_only=False))
    locs = [loc for loc in conf.iter("rsc_location") if loc.find("rule") is not None]
    assert locs and all(loc.get("resource-discovery") is None for loc in locs)


def test_every_id_in_the_merged_configuration_is_unique() -> None:
    ids = Counter(el.get("id") for el in _configuration().iter() if el.get("id"))
    assert ids and [i for i, n in ids.items() if n > 1] == []


def test_the_merged_configuration_holds_each_pair_s_objects_and_the_shared_ones_once() -> None:
    shape = ClusterShape(boxes=6, targets_per_pair=5)
    counts = scale_cib.counts(_configuration(shape))
    targets = shape.pairs * shape.targets_per_pair
    # Per target: the DRBD primitive, an address and the target; per box a fence device;
    # once: the watchdog device, the storage ping and discovery auth.
    assert counts.primitives == targets * 3 + shape.boxes + 3
    assert counts.clones == targets + 2  # each DRBD clone, ping, discovery
    assert counts.groups == targets
    assert counts.nodes == shape.boxes
    assert counts.fencing_levels == 2 * shape.boxes  # IPMI, then the watchdog
    # The product's five per target (preference, ping, discovery, colocation, order),
    # two pair rules per target, and each fence device kept off its own box.
    assert counts.constraints == targets * 7 + shape.boxes


def test_the_watchdog_device_fences_every_box() -> None:
    conf = _configuration()
    (device,) = [p for p in conf.iter("primitive") if p.get("id") == cib.WATCHDOG_DEVICE]
    hosts = cib.nvpairs(device.find("instance_attributes"))["pcmk_host_list"].split()
    assert sorted(hosts) == sorted(_node_pairs(conf))


@pytest.mark.parametrize("sticky", [True, False])
def test_fence_devices_stick_only_as_designed(sticky: bool) -> None:
    conf = _configuration(ClusterShape(4, 1, sticky_fence_devices=sticky))
    devices = [p for p in conf.iter("primitive") if p.get("type") == "fence_ipmilan"]
    assert len(devices) == 4
    for device in devices:
        meta = cib.nvpairs(device.find("meta_attributes"))
        assert meta.get("resource-stickiness") == (scale_cib.FENCE_STICKINESS if sticky
                                                   else None)


def test_a_pair_given_twice_is_refused_not_merged() -> None:
    """Names unique per pair are what keeps the merge honest: the same pair twice clashes."""
    (config,) = pair_configs(ClusterShape(2, 2))
    with pytest.raises(IscsihaError) as caught:
        configuration(ClusterShape(4, 2), [config, config])
    assert caught.value.reports[0].code == "duplicate-id"


@pytest.mark.parametrize(("boxes", "targets", "field"), [
    (3, 64, "boxes"), (0, 64, "boxes"), (4, 0, "targets per pair"),
    (4, scale_cib.MAX_TARGETS_PER_PAIR + 1, "targets per pair")])
def test_a_shape_out_of_range_is_refused(boxes: int, targets: int, field: str) -> None:
    with pytest.raises(IscsihaError) as caught:
        ClusterShape(boxes, targets).check()
    assert [(r.field, r.value) for r in caught.value.reports] == [
        (field, boxes if field == "boxes" else targets)]


def test_crm_verify_accepts_the_cib_of_four_boxes(tmp_path: Path) -> None:
    crm_verify = shutil.which("crm_verify")
    if crm_verify is None:
        skip_or_fail("crm_verify is not installed (apt-get install pacemaker-cli-utils)")
        return
    cib_file = tmp_path / "cib.xml"
    cib_file.write_text(whole_cib(FOUR_BOXES))
    result = subprocess.run([crm_verify, "-x", str(cib_file)], capture_output=True, text=True,
                            timeout=120, check=False)
    assert result.returncode == 0, result.stderr


def test_a_box_loss_graph_is_read_from_crm_simulate_s_output() -> None:
    """4 boxes, 2 targets per pair: box01 served p01-t000 (p01-t001 ran on box02)."""
    graph = parse_graph(BOX_LOSS_GRAPH.read_text())
    assert graph.fenced == ["box01"]
    assert graph.targets_placed == {"p01-t000": {"box02"}}
    assert graph.targets_touched == {"p01-t000"}
    # Its one promote, and the address and target started where it was promoted.
    assert graph.actions["rsc_op promote"] == 1
    assert graph.actions["crm_event stonith"] == 1
    pseudo = sum(n for kind, n in graph.actions.items() if kind.startswith("pseudo_event"))
    assert graph.operations == sum(graph.actions.values()) - pseudo
    assert graph.synapses == len(ET.parse(BOX_LOSS_GRAPH).getroot().findall("synapse"))


def test_a_settled_cluster_s_graph_has_nothing_to_do() -> None:
    graph = parse_graph(SETTLED_GRAPH.read_text())
    assert (graph.synapses, graph.operations, graph.fenced) == (0, 0, [])


@pytest.mark.parametrize("text", ["", "not xml", "<cib/>", "<transition_graph"])
def test_output_that_is_no_graph_is_refused(text: str) -> None:
    with pytest.raises(IscsihaError) as caught:
        parse_graph(text)
    assert caught.value.reports[0].code == "bad-graph"


def test_the_version_is_read_from_crm_simulate_s_first_line() -> None:
    text = "Pacemaker 3.0.0\nWritten by Andrew Beekhof and the Pacemaker project contributors\n"
    assert pacemaker_version(text) == "3.0.0"
    with pytest.raises(IscsihaError):
        pacemaker_version("crm_simulate: command not found\n")


def test_spread_is_median_and_range() -> None:
    assert spread([3.0, 1.0, 2.0, 10.0]) == {"median": 2.5, "min": 1.0, "max": 10.0,
                                             "runs": 4}


def test_repeat_stops_at_the_run_count_or_the_time_bound() -> None:
    def run() -> Timed:
        calls.append(1)
        return Timed(0.0, 0.0, 0)

    calls: list[int] = []
    assert len(repeat(run, Bounds(runs=3, max_seconds=3600))) == 3
    calls.clear()
    assert len(repeat(run, Bounds(runs=3, max_seconds=0))) == 1  # one run at least
    assert len(calls) == 1


def test_box_counts_are_read_or_refused() -> None:
    assert box_counts("2,4,8,16") == [2, 4, 8, 16]
    with pytest.raises(IscsihaError) as caught:
        box_counts("2,four")
    assert caught.value.reports[0].field == "--boxes"


def test_a_kept_settled_cib_is_reused_only_beside_the_same_planned_cib(tmp_path: Path) -> None:
    planned = whole_cib(FOUR_BOXES)
    (tmp_path / "planned.xml").write_text(planned)
    (tmp_path / "settled.xml").write_bytes(b"<cib/>")
    assert reusable(tmp_path, planned) == b"<cib/>"
    assert reusable(tmp_path, whole_cib(ClusterShape(4, 3, probe_pair_only=False))) is None
    assert reusable(tmp_path / "missing", planned) is None
