"""A whole CIB for several pairs under one Pacemaker cluster, for the scale-out simulation.

Each pair's resources come from the product's own CIB generator
(``iscsiha.plan.cib.configuration``) run on a two-box desired state of that pair; the
pairs' fragments are then merged into one ``<configuration>``: the few cluster-wide
objects (cluster options, the watchdog fence device, the storage ping clone, discovery
auth) once, everything else by its id, which must then be unique. Location rules keep
each target's DRBD clone and group on the two boxes of its pair, read from a permanent
node attribute, as docs/scale-out.md designs. The status section has every box online
with the attributes the agents would set (DRBD promotion scores on the pair's boxes,
the ping count), so the scheduler can start everything; the simulation then settles it.
"""

from __future__ import annotations

import xml.etree.ElementTree as ET
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from iscsiha.errors import IscsihaError, Report
from iscsiha.model.identity import allocate_drbd
from iscsiha.model.load import load_data
from iscsiha.model.types import Config
from iscsiha.plan import cib

PAIR_ATTRIBUTE = "iscsiha-pair"
STORAGE = "storage"
# The linbit agent's promotion score for a resource UpToDate on both sides.
PROMOTION_SCORE = "10000"
CIB_SCHEMA = "pacemaker-3.9"
# Shared by every pair's fragment: taken once (the watchdog device's host list grows).
SHARED_IDS = frozenset({cib.WATCHDOG_DEVICE, f"ping-{STORAGE}-clone", "lio-discovery-clone",
                        "iscsiha-options"})
MAX_BOXES = 200  # the addressing below gives each box one host number in a /24
MAX_TARGETS_PER_PAIR = 200  # one portal each in the pair's own /24; below DRBD's 211 ports
ALLOWED_BOXES = f"an even number from 2 to {MAX_BOXES}"
ALLOWED_TARGETS = f"1 to {MAX_TARGETS_PER_PAIR}"


def box_name(index: int) -> str:
    """Box ``index`` (1-based); pair p holds boxes 2p-1 and 2p."""
    return f"box{index:02d}"


def node_id(name: str) -> str:
    """Corosync's node id of a box: its index (box07 is 7)."""
    return str(int(name.removeprefix("box")))


def pair_name(pair: int) -> str:
    return f"p{pair:02d}"


def target_name(pair: int, index: int) -> str:
    return f"{pair_name(pair)}-t{index:03d}"


def pair_data(pair: int, targets: int) -> dict[str, Any]:
    """The desired state of pair ``pair`` (1-based) with ``targets`` one-LUN targets,
    shaped like examples/two-node.toml: two cluster links, a replication link, a storage
    network with a ping host, a tiebreaker, mutual CHAP and discovery auth."""
    boxes = (2 * pair - 1, 2 * pair)

    def node(index: int) -> dict[str, Any]:
        host = 10 + index
        return {"name": box_name(index),
                "addresses": {"link0": f"10.10.0.{host}", "link1": f"10.11.0.{host}",
                              "repl": f"10.20.0.{host}", STORAGE: f"10.30.0.{host}"},
                "bmc": {"address": f"10.0.1.{host}", "user": "fence",
                        "password": "bmc-Password-1", "cipher": 3}}

    volumes, target_tables = [], []
    for t in range(targets):
        name = target_name(pair, t)
        volumes.append({"name": f"{name}-v", "size": "1G"})
        target_tables.append({
            "name": name, "iqn": f"iqn.2026-12.com.example:san.{name}",
            "portals": [f"10.30.{pair}.{t + 1}"],
            # Half the targets on each box, as an admin balancing a pair would.
            "preferred_node": box_name(boxes[t % 2]), "failback": "manual",
            "initiators": ["iqn.1993-08.org.debian:01:hv1"],
            "luns": [{"lun": 0, "volume": f"{name}-v"}],
            "auth": {"mode": "mutual-chap", "user": "hypervisors", "secret": "hv-Secret-0001",
                     "mutual_user": "san", "mutual_secret": "san-Secret-0001"},
        })
    return {
        "cluster": {"name": "san", "tiebreaker": "10.0.0.5", "volume_group": "data"},
        "networks": [
            {"name": "link0", "role": "cluster", "subnet": "10.10.0.0/24"},
            {"name": "link1", "role": "cluster", "subnet": "10.11.0.0/24"},
            {"name": "repl", "role": "replication", "subnet": "10.20.0.0/24"},
            {"name": STORAGE, "role": "storage", "subnet": "10.30.0.0/16",
             "ping": ["10.30.0.1"]},
        ],
        "nodes": [node(i) for i in boxes],
        "discovery_auth": {"mode": "chap", "user": "discovery", "secret": "disc0very-Secret"},
        "volumes": volumes,
        "targets": target_tables,
    }


@dataclass(frozen=True)
class ClusterShape:
    boxes: int
    targets_per_pair: int
    # Probe a pair's resources only on its own boxes (resource-discovery="never" elsewhere).
    probe_pair_only: bool = True
    # Fence devices stay where they run (the product's fragment gives them no stickiness).
    sticky_fence_devices: bool = True

    @property
    def pairs(self) -> int:
        return self.boxes // 2

    def check(self) -> None:
        problems = []
        if not (2 <= self.boxes <= MAX_BOXES and self.boxes % 2 == 0):
            problems.append(Report("bad-scale", "boxes", self.boxes, ALLOWED_BOXES))
        if not 1 <= self.targets_per_pair <= MAX_TARGETS_PER_PAIR:
            problems.append(Report("bad-scale", "targets per pair", self.targets_per_pair,
                                   ALLOWED_TARGETS))
        if problems:
            raise IscsihaError(problems)


def pair_configs(shape: ClusterShape) -> list[Config]:
    """Each pair's desired state, validated by the product's own loader."""
    shape.check()
    return [load_data(pair_data(p, shape.targets_per_pair)) for p in range(1, shape.pairs + 1)]


def configuration(shape: ClusterShape, configs: Sequence[Config]) -> ET.Element:
    """The merged ``<configuration>`` of every pair, with the pair rules and the nodes."""
    merged = ET.Element("configuration")
    sections = {tag: ET.SubElement(merged, tag) for tag in
                ("crm_config", "nodes", "resources", "constraints", "fencing-topology",
                 "alerts")}
    seen: dict[str, ET.Element] = {}
    for pair, config in enumerate(configs, 1):
        part = cib.configuration(config, allocate_drbd(config))
        if shape.sticky_fence_devices:
            _stick_fence_devices(part)
        for section in part:
            for child in section:
                _merge(sections[section.tag], child, seen)
        for target in config.targets:
            for rsc in (cib.drbd_clone_id(target.name), cib.target_group_id(target.name)):
                _keep_in_pair(sections["constraints"], rsc, pair_name(pair),
                              shape.probe_pair_only)
        for node in config.cluster.nodes:
            _node(sections["nodes"], node.name, pair_name(pair))
    return merged


def _merge(section: ET.Element, child: ET.Element, seen: dict[str, ET.Element]) -> None:
    cid = child.get("id", "")
    if cid not in seen:
        section.append(child)
        seen[cid] = child
        return
    if cid not in SHARED_IDS:
        raise IscsihaError.single("duplicate-id", f"{section.tag} id", cid,
                                  "ids unique across pairs, or a cluster-wide object",
                                  "two pairs' fragments both hold it")
    if cid != cib.WATCHDOG_DEVICE:
        if ET.tostring(child) != ET.tostring(seen[cid]):
            raise IscsihaError.single("shared-object-differs", f"{section.tag} id", cid,
                                      "the same definition in every pair's fragment",
                                      "two pairs define it differently")
        return
    # One fence_watchdog device for the cluster: every box's watchdog level uses it.
    mine = _host_list(seen[cid])
    mine.set("value", f"{mine.get('value', '')} {_host_list(child).get('value', '')}")


def _host_list(device: ET.Element) -> ET.Element:
    found = [nv for nv in device.iter("nvpair") if nv.get("name") == "pcmk_host_list"]
    if len(found) != 1:
        raise IscsihaError.single("bad-watchdog-device", "watchdog device pcmk_host_list",
                                  len(found), "exactly one", "the product's fragment changed")
    return found[0]


FENCE_STICKINESS = "100"


def _stick_fence_devices(part: ET.Element) -> None:
    """With more than one other box to run on, a box loss made the scheduler even out the
    devices' placement: nearly every fence device of the cluster stopped and started
    elsewhere in the failover's transition (scale-sim, 16 boxes)."""
    for prim in part.iter("primitive"):
        if prim.get("class") == "stonith" and prim.get("type") == "fence_ipmilan":
            meta = prim.find("meta_attributes")
            if meta is None:
                meta = ET.SubElement(prim, "meta_attributes", id=f"{prim.get('id')}-meta")
            ET.SubElement(meta, "nvpair", id=f"{meta.get('id')}-resource-stickiness",
                          name="resource-stickiness", value=FENCE_STICKINESS)


def _keep_in_pair(constraints: ET.Element, rsc: str, pair: str, probe_pair_only: bool) -> None:
    cid = f"{rsc}-in-{pair}"
    attrs = {"id": cid, "rsc": rsc}
    if probe_pair_only:
        # Other pairs' boxes hold no DRBD resource file for it: probing it there is
        # work (one probe per box and resource) and status rows with nothing to find.
        attrs["resource-discovery"] = "never"
    loc = ET.SubElement(constraints, "rsc_location", attrs)
    rule = ET.SubElement(loc, "rule", {"id": f"{cid}-rule", "score": "-INFINITY"})
    ET.SubElement(rule, "expression", id=f"{cid}-expr", attribute=PAIR_ATTRIBUTE,
                  operation="ne", value=pair)


def _node(nodes: ET.Element, name: str, pair: str) -> None:
    index = node_id(name)
    node = ET.SubElement(nodes, "node", id=str(index), uname=name)
    attrs = ET.SubElement(node, "instance_attributes", id=f"nodes-{index}")
    ET.SubElement(attrs, "nvpair", id=f"nodes-{index}-{PAIR_ATTRIBUTE}", name=PAIR_ATTRIBUTE,
                  value=pair)


def status(configs: Sequence[Config]) -> ET.Element:
    """Every box online and a cluster member, no resource history yet; the attributes the
    linbit agent (promotion scores) and the ping clone would have set."""
    root = ET.Element("status")
    for config in configs:
        for node in config.cluster.nodes:
            index = node_id(node.name)
            state = ET.SubElement(root, "node_state", id=index, uname=node.name,
                                  in_ccm="true", crmd="online", join="member",
                                  expected="member")
            transient = ET.SubElement(state, "transient_attributes", id=index)
            attrs = ET.SubElement(transient, "instance_attributes", id=f"status-{index}")
            values = [(f"ping-{STORAGE}", "1")]
            values += [(f"master-drbd-{t.name}", PROMOTION_SCORE) for t in config.targets]
            for name, value in values:
                ET.SubElement(attrs, "nvpair", id=f"status-{index}-{name}", name=name,
                              value=value)
    return root


def whole_cib(shape: ClusterShape, configs: Sequence[Config] | None = None) -> str:
    """The CIB a cluster of ``shape`` would hold right after it formed: XML text.
    ``configs``: the pairs' desired states if already made (pair_configs)."""
    root = ET.Element("cib", {"validate-with": CIB_SCHEMA, "admin_epoch": "0", "epoch": "1",
                              "num_updates": "0", "have-quorum": "1",
                              # The last box: the simulated box loss is the first one's.
                              "dc-uuid": node_id(box_name(shape.boxes))})
    configs = pair_configs(shape) if configs is None else configs
    root.append(configuration(shape, configs))
    root.append(status(configs))
    return ET.tostring(root, encoding="unicode")


@dataclass(frozen=True)
class CibCounts:
    nodes: int
    primitives: int
    clones: int
    groups: int
    constraints: int
    fencing_levels: int


def counts(configuration_xml: ET.Element) -> CibCounts:
    tags = Counter(el.tag for el in configuration_xml.iter())
    constraints = configuration_xml.find("constraints")
    return CibCounts(nodes=tags["node"], primitives=tags["primitive"], clones=tags["clone"],
                     groups=tags["group"],
                     constraints=0 if constraints is None else len(constraints),
                     fencing_levels=tags["fencing-level"])
