"""The Pacemaker CIB <configuration> fragment for the desired state.

Per target a promotable clone of its DRBD resource (all its LUNs' volumes) and a
group of its floating addresses and then the target with all its LUNs. The address agent blocks the
iSCSI port before the address comes up, and the target agent unblocks it as the
last step of its start (and blocks it first on stop), so no initiator sees an
empty target or a TCP reset while a target moves. The port block lives in those
two agents rather than in separate block/unblock resources, so every monitor
reads real state and a move has fewer operations. The group is colocated with the
promotion of its DRBD resource, and only the target is ordered after it: the
addresses (their port blocked) come up while DRBD demotes and promotes instead of
after it.
"""

from __future__ import annotations

import xml.etree.ElementTree as ET
from collections.abc import Iterable, Mapping

from iscsiha.errors import IscsihaError, Report, bounded
from iscsiha.model import names
from iscsiha.model.identity import (
    DRBD_MINOR_MAX,
    DRBD_PORT_FIRST,
    DRBD_PORT_LAST,
    DRBD_VOLUME_MAX,
    DrbdResource,
    DrbdSlot,
    lun_identity,
)
from iscsiha.model.types import (
    Auth,
    AuthMode,
    Config,
    Failback,
    Network,
    NetworkRole,
    Node,
    Target,
)
from iscsiha.plan.agent_params import (
    AuthParams,
    LunParam,
    PortalParam,
    TargetParams,
)
from iscsiha.plan.cib_merge import CIB_LAYOUT, CIB_LAYOUT_OPTION

# Our DRBD primitives record their port and each volume's number and minor, so the
# next plan keeps them: META_VOLUMES is "VOLUME:NUMBER:MINOR ..." (names hold no ':').
META_PORT = "iscsiha-drbd-port"
META_VOLUMES = "iscsiha-drbd-volumes"
META_RESERVATIONS = "iscsiha-drbd-reservations"  # the reservations volume's minor

PREFERRED_SCORE = 100
NODE_ACTION_LIMIT = 32
# A group's stickiness is the sum over its members (at least an address and the
# target), so 100 each keeps a manual-failback target where it runs against the
# preferred node's 100.
STICKINESS = {Failback.MANUAL: 100, Failback.AUTO: 0}
# Outweighs preference and stickiness together, so a box cut off from its storage
# network hands its targets to one that is not.
NO_PING_SCORE = -10000
TARGET_PRIORITY = 10
PRIORITY_FENCING_DELAY = "10s"
# sbd's watchdog resets a box that lost quorum within SBD_WATCHDOG_TIMEOUT (10 s,
# image/rootfs/etc/default/sbd); the survivor counts a box that its BMC cannot power
# off as gone after twice that, as sbd's documentation asks.
WATCHDOG_FENCE_TIMEOUT = "20s"
IPMI_OFF_TIMEOUT = "15s"
FENCE_FAILURE_TIMEOUT = "180s"  # three monitor intervals
# Pacemaker accepts its watchdog device only under this name (fenced asserts otherwise).
WATCHDOG_DEVICE = "watchdog"
FENCE_DELAY_BASE = "5s"  # at most half the priority delay, as Pacemaker advises

DRBD_OPS = (
    ("start", "0s", "240s", None), ("stop", "0s", "100s", None),
    ("promote", "0s", "90s", None), ("demote", "0s", "90s", None),
    ("monitor", "29s", "20s", "Promoted"), ("monitor", "31s", "20s", "Unpromoted"),
)
AGENT_OPS = (("start", "0s", "60s", None), ("stop", "0s", "60s", None),
             ("monitor", "10s", "20s", None))


def target_group_id(target: str) -> str:
    return f"target-{target}"


def drbd_clone_id(target: str) -> str:
    return f"drbd-{target}-clone"


def configuration(config: Config, drbd: Mapping[str, DrbdResource]) -> ET.Element:
    root = ET.Element("configuration")
    tiebreaker = config.cluster.tiebreaker is not None
    options = [
        # Which release's layout this is (iscsiha.plan.cib_merge refuses to go back).
        (CIB_LAYOUT_OPTION, str(CIB_LAYOUT)),
        ("stonith-enabled", "true"), ("no-quorum-policy", "stop"),
        # A fenced box stays off until the admin powers it on: a box that failed
        # once is not trusted to rejoin on its own (no fence loops), and a box
        # rebooting back while DRBD's fence-peer handler decides held a promotion
        # for 93 s in the lab (docs/failover.md).
        ("stonith-action", "off"),
        # A move of several targets is many short, independent DRBD operations (a
        # demote, a promote and notifications per target): run them side by side
        # instead of letting CPU load throttle the DC to one at a time.
        ("load-threshold", "400%"), ("node-action-limit", str(NODE_ACTION_LIMIT)),
    ]
    if not tiebreaker:
        # Without a tiebreaker both boxes keep quorum when they lose each other and
        # both may shoot: the box serving targets waits less, so it wins. With
        # one, only the quorate side shoots and a delay would only slow failover.
        options.append(("priority-fencing-delay", PRIORITY_FENCING_DELAY))
    else:
        # A box that died with its BMC cannot be powered off: the second fencing
        # level counts it off once its own watchdog must have reset it. Only with a
        # tiebreaker: a box that loses the other then also loses quorum, which is what
        # makes sbd reset it; in two_node mode both would keep quorum and write.
        options.append(("stonith-watchdog-timeout", WATCHDOG_FENCE_TIMEOUT))
    _nvset(ET.SubElement(root, "crm_config"), "cluster_property_set", "iscsiha-options",
           options)
    resources = ET.SubElement(root, "resources")
    constraints = ET.SubElement(root, "constraints")
    topology = ET.SubElement(root, "fencing-topology")
    first = config.cluster.nodes[0]
    for node in config.cluster.nodes:
        # And when both serve targets: the first box's device waits, so it wins a tie.
        delayed = not tiebreaker and node is first
        _fence_device(resources, constraints, node, FENCE_DELAY_BASE if delayed else None,
                      watchdog_level=tiebreaker)
        if tiebreaker:
            for index, device in enumerate((f"fence-{node.name}", WATCHDOG_DEVICE), 1):
                ET.SubElement(topology, "fencing-level", id=f"fencing-{node.name}-{index}",
                              target=node.name, index=str(index), devices=device)
    if tiebreaker:
        _watchdog_device(resources, config.cluster.nodes)
    for net in config.cluster.networks_with(NetworkRole.STORAGE):
        if net.ping:
            _ping_clone(resources, net)
    discovery = config.cluster.discovery_auth.mode is not AuthMode.NONE
    if discovery:
        _discovery(resources, config)
    for target in config.targets:
        _drbd_clone(resources, target.name, drbd[target.name])
        _target_group(resources, constraints, config, target, drbd[target.name], discovery)
    _alerts(root, bool(config.alerts.recipients))
    return root


# Only with recipients: Pacemaker starts the agent (a Python process) for every node,
# fencing and resource event, dozens in a failover, on the boxes doing the failover.
# Pacemaker runs it as hacluster for every node, fencing and resource event; it reads
# the recipients (and their secrets) from a file apply writes for the haclient group,
# so no secret is in the CIB. One alert without recipients: Pacemaker then runs it
# once per event instead of once per recipient, so one process decides whether this
# box reports the event (iscsiha.alerts.pacemaker) and writes one journal record.
ALERT_AGENT = "/usr/bin/iscsiha-alert"
ALERT_ID = "iscsiha-alert"
# Read back by iscsiha.alerts.pacemaker.TIMESTAMP_FORMAT (a unit test keeps them equal).
ALERT_TIMESTAMP_FORMAT = "%Y-%m-%dT%H:%M:%S.%06N%z"
# Pacemaker kills an agent after this; the agent keeps its own sends within 20 s.
ALERT_TIMEOUT = "30s"


def _alerts(root: ET.Element, wanted: bool) -> None:
    alerts = ET.SubElement(root, "alerts")  # empty: none (it replaces the live section)
    if not wanted:
        return
    alert = ET.SubElement(alerts, "alert", id=ALERT_ID, path=ALERT_AGENT)
    _nvset(alert, "meta_attributes", f"{ALERT_ID}-meta",
           [("timestamp-format", ALERT_TIMESTAMP_FORMAT), ("timeout", ALERT_TIMEOUT)])


def secret_parameters(config: Config) -> dict[tuple[str, str], str]:
    """(resource id, parameter) -> secret value, for what the CIB holds as lrm://."""
    secrets: dict[tuple[str, str], str] = {}
    for node in config.cluster.nodes:
        # Not a CIB parameter (see FENCE_IPMITOOL): iscsiha-fence-ipmitool reads it here.
        secrets[(f"fence-{node.name}", "password")] = node.bmc.password
    auths = [("lio-discovery", config.cluster.discovery_auth)]
    auths += [(f"target-{t.name}-lio", t.auth) for t in config.targets]
    for rsc, auth in auths:
        if auth.initiator:
            secrets[(rsc, "chap_secret")] = auth.initiator.secret
        if auth.target:
            secrets[(rsc, "mutual_secret")] = auth.target.secret
    return secrets


def previous_drbd(cib_xml: str) -> dict[str, DrbdResource]:
    """Target -> its DRBD resource, as recorded in a CIB (a live one or an earlier plan).

    Only our DRBD primitives (those with META_PORT or META_VOLUMES) count; a value
    there that this plan could not have written is refused rather than skipped, so a
    damaged CIB never makes a plan silently renumber a running volume.
    """
    try:
        root = ET.fromstring(cib_xml)
    except (ET.ParseError, ValueError) as exc:  # ValueError: text XML cannot encode
        raise IscsihaError.single("bad-previous-cib", "previous CIB", bounded(cib_xml),
                                  PREVIOUS_CIB_ALLOWED, f"cannot be parsed: {exc}") from exc
    reader = _PreviousDrbd()
    for prim in root.iter("primitive"):
        if prim.get("provider") == "linbit" and prim.get("type") == "drbd":
            reader.primitive(prim)
    if reader.reports:
        raise IscsihaError(reader.reports)
    return reader.found


PREVIOUS_CIB_ALLOWED = "a CIB XML document (cibadmin -Q or an earlier plan)"


class _PreviousDrbd:
    """Reads our DRBD primitives, keeping every problem and checking values are unique."""

    def __init__(self) -> None:
        self.found: dict[str, DrbdResource] = {}
        self.reports: list[Report] = []
        self._ports: dict[int, str] = {}
        self._minors: dict[int, str] = {}
        self._volumes: dict[str, str] = {}

    def bad(self, field: str, value: object, allowed: str, message: str = "") -> None:
        self.reports.append(Report("bad-previous-cib", f"previous CIB: {field}",
                                   bounded(value), allowed, message))

    def primitive(self, prim: ET.Element) -> None:
        meta = nvpairs(prim.find("meta_attributes"))
        if META_PORT not in meta and META_VOLUMES not in meta:
            return  # not written by a plan (a hand-made DRBD primitive): nothing to keep
        where = f"primitive {bounded(prim.get('id', '?'))}"
        name = nvpairs(prim.find("instance_attributes")).get("drbd_resource")
        problem = names.object_name_problem(name) if name is not None else "is missing"
        if problem:
            self.bad(f"{where} drbd_resource", name, names.OBJECT_NAME_ALLOWED, problem)
        elif name in self.found:
            self.bad(f"{where} drbd_resource", name, "one primitive per DRBD resource",
                     "is recorded twice")
        port = names.parse_decimal(meta.get(META_PORT, ""), DRBD_PORT_FIRST, DRBD_PORT_LAST)
        if port is None:
            self.bad(f"{where} {META_PORT}", meta.get(META_PORT), names.DRBD_PORT_ALLOWED)
        elif port in self._ports:
            self.bad(f"{where} {META_PORT}", port, "a port used by one resource",
                     f"is also the port of {self._ports[port]}")
        else:
            self._ports[port] = where
        volumes = self.volumes(where, meta.get(META_VOLUMES, ""))
        reservations, ok = self.reservations(where, meta.get(META_RESERVATIONS))
        if (not problem and name is not None and port is not None and volumes is not None
                and ok):
            self.found.setdefault(name, DrbdResource(port, volumes, reservations))

    def reservations(self, where: str, text: str | None) -> tuple[int | None, bool]:
        """The reservations volume's minor (None: a target made before it existed)."""
        if text is None:
            return None, True
        field = f"{where} {META_RESERVATIONS}"
        minor = names.parse_decimal(text, 0, DRBD_MINOR_MAX)
        if minor is None:
            self.bad(field, text, f"a minor {names.DRBD_MINOR_ALLOWED}")
            return None, False
        if minor in self._minors:
            self.bad(field, text, "each minor once in the CIB",
                     f"the minor is also in {self._minors[minor]}")
            return None, False
        self._minors[minor] = where
        return minor, True

    def volumes(self, where: str, text: str) -> dict[str, DrbdSlot] | None:
        field = f"{where} {META_VOLUMES}"
        out: dict[str, DrbdSlot] = {}
        numbers: set[int] = set()
        ok = True
        # Split on spaces only: the plan writes nothing else between items.
        for item in (w for w in text.split(" ") if w):
            parts = item.split(":")
            number = minor = None
            if len(parts) == 3 and names.object_name_problem(parts[0]) is None:
                number = names.parse_decimal(parts[1], 0, DRBD_VOLUME_MAX)
                minor = names.parse_decimal(parts[2], 0, DRBD_MINOR_MAX)
            if number is None or minor is None:
                self.bad(field, item, "space-separated VOLUME:NUMBER:MINOR, a volume name, "
                         f"a number {names.DRBD_VOLUME_ALLOWED} and a minor "
                         f"{names.DRBD_MINOR_ALLOWED}")
                ok = False
                continue
            volume = parts[0]
            if volume in self._volumes:
                self.bad(field, item, "each volume once in the CIB",
                         f"the volume is also in {self._volumes[volume]}")
                ok = False
            if minor in self._minors:
                self.bad(field, item, "each minor once in the CIB",
                         f"the minor is also in {self._minors[minor]}")
                ok = False
            self._volumes[volume] = self._minors[minor] = where
            if number in numbers:
                self.bad(field, item, "each volume number once per resource",
                         "its number is used twice")
                ok = False
            numbers.add(number)
            out[volume] = DrbdSlot(number, minor)
        return out if ok else None


def to_text(element: ET.Element) -> str:
    ET.indent(element, space="  ")
    return ET.tostring(element, encoding="unicode") + "\n"


# -- pieces -----------------------------------------------------------------------------


# fence_ipmilan puts a password it is given on ipmitool's command line (`-P`), readable
# in /proc by any local user: it gets none, and runs this wrapper as its ipmitool, which
# reads the password from the lrm:// store (secret_parameters) and gives ipmitool `-E`.
# The wheel installs it (pyproject's [project.scripts]).
FENCE_IPMITOOL = "/usr/bin/iscsiha-fence-ipmitool"


def _fence_device(resources: ET.Element, constraints: ET.Element, node: Node,
                  delay: str | None, watchdog_level: bool) -> None:
    rsc = f"fence-{node.name}"
    params = [
        ("ip", str(node.bmc.address)), ("username", node.bmc.user),
        ("ipmitool_path", FENCE_IPMITOOL), ("lanplus", "1"), ("pcmk_host_list", node.name),
        # By default a device runs one action at a time: a fence request queued behind a
        # monitor stuck on a dead BMC (up to its 60 s timeout), timed out unstarted, and
        # the queued "off" then ran once the BMC was back, powering off the box its
        # admin had just powered on (lab, 2026-12-06).
        ("pcmk_action_limit", "2"),
    ]
    if node.bmc.cipher is not None:
        # Without it ipmitool first asks the BMC for its cipher suites: a BMC without
        # that command answers each call only after ipmitool's retries (14 s with the
        # lab's ipmi_sim, three calls per fence).
        params.append(("cipher", str(node.bmc.cipher)))
    if delay:
        params.append(("pcmk_delay_base", delay))
    if watchdog_level:
        # A BMC that died with its box never answers: Pacemaker gave up only at its
        # 60 s fencing timeout before trying the watchdog level (lab: 59 s). One that
        # answers fences in 1.5-2.3 s in the lab with its cipher suite named; one
        # slower than this leaves the box to the watchdog level, which is as safe.
        params.append(("pcmk_off_timeout", IPMI_OFF_TIMEOUT))
    prim = _primitive(resources, rsc, "stonith", "fence_ipmilan", None, params)
    # A failed start bans the device from the only box that may run it: forgiven once
    # the BMC has answered again for this long (or at once by a cleanup).
    _nvset(prim, "meta_attributes", f"{rsc}-meta", [("failure-timeout", FENCE_FAILURE_TIMEOUT)])
    # fence_ipmilan's status call took over 20 s in the lab under load, and the start
    # (a status call too) on a box just back from a fence timed out at the default 20 s.
    _ops(prim, rsc, (("start", "0s", "60s", None), ("monitor", "60s", "60s", None)))
    # A monitor that fails (a dead BMC is known in 2 s) must not restart the device: the
    # restart joined the failover's transition when a box died with its BMC and held its
    # targets' start 5 s (lab). The fencer uses the device all the same, and status
    # shows it failing (crm_mon's failure_ignored).
    for op in prim.iter("op"):
        if op.get("name") == "monitor":
            op.set("on-fail", "ignore")
    # A box never runs the device that would power itself off.
    ET.SubElement(constraints, "rsc_location", id=f"{rsc}-not-on-{node.name}", rsc=rsc,
                  node=node.name, score="-INFINITY")


def _watchdog_device(resources: ET.Element, nodes: Iterable[Node]) -> None:
    """fence_watchdog: not run, the fencer waits stonith-watchdog-timeout instead."""
    prim = _primitive(resources, WATCHDOG_DEVICE, "stonith", "fence_watchdog", None,
                      [("pcmk_host_list", " ".join(n.name for n in nodes))])
    # Without stickiness the scheduler moved it to even out the boxes' resource counts
    # on every target move: a stop and a start beside the move's own work (lab timeline).
    _nvset(prim, "meta_attributes", f"{WATCHDOG_DEVICE}-meta",
           [("resource-stickiness", "100")])
    _ops(prim, WATCHDOG_DEVICE, (("monitor", "60s", "20s", None),))


def _discovery(resources: ET.Element, config: Config) -> None:
    """Discovery auth is global to LIO on a box, so it runs on both boxes."""
    clone = ET.SubElement(resources, "clone", id="lio-discovery-clone")
    prim = _primitive(clone, "lio-discovery", "ocf", "discovery", "iscsiha",
                      _auth_params(config.cluster.discovery_auth).to_params())
    _ops(prim, "lio-discovery", AGENT_OPS)


def ping_attribute(net: Network) -> str:
    return f"ping-{net.name}"


def _ping_clone(resources: ET.Element, net: Network) -> None:
    """Each box pings the network's hosts; the count reached lands in a node attribute."""
    rsc = f"ping-{net.name}"
    clone = ET.SubElement(resources, "clone", id=f"{rsc}-clone")
    prim = _primitive(clone, rsc, "ocf", "ping", "pacemaker", [
        ("name", ping_attribute(net)), ("host_list", " ".join(str(h) for h in net.ping)),
        ("multiplier", "1"), ("attempts", "2"), ("timeout", "1"),
        # Short dampening: a flapping link still settles before targets move.
        ("dampen", "3s"),
    ])
    _ops(prim, rsc, (("start", "0s", "60s", None), ("stop", "0s", "20s", None),
                     ("monitor", "5s", "20s", None)))


def _drbd_clone(resources: ET.Element, target: str, res: DrbdResource) -> None:
    clone = ET.SubElement(resources, "clone", id=drbd_clone_id(target))
    _nvset(clone, "meta_attributes", f"{drbd_clone_id(target)}-meta", [
        ("promotable", "true"), ("promoted-max", "1"), ("promoted-node-max", "1"),
        ("clone-max", "2"), ("clone-node-max", "1"), ("notify", "false"),
    ])
    rsc = f"drbd-{target}"
    # Notifications cost a move four rounds of the agent on both boxes, about 2 s
    # between the demote and the target's start. For two boxes they only re-run the
    # master score (monitor does too), a no-op adjust, and a self-outdate that the
    # fence-peer handler's constraint already covers.
    prim = _primitive(clone, rsc, "ocf", "drbd", "linbit", [
        ("drbd_resource", target), ("ignore_missing_notifications", "true")])
    volumes = " ".join(f"{name}:{slot.number}:{slot.minor}"
                       for name, slot in sorted(res.volumes.items()))
    meta = [(META_PORT, str(res.port)), (META_VOLUMES, volumes)]
    if res.reservations is not None:
        meta.append((META_RESERVATIONS, str(res.reservations)))
    _nvset(prim, "meta_attributes", f"{rsc}-meta", meta)
    _ops(prim, rsc, DRBD_OPS)


def _target_group(resources: ET.Element, constraints: ET.Element, config: Config,
                  target: Target, res: DrbdResource, discovery: bool) -> None:
    gid = target_group_id(target.name)
    group = ET.SubElement(resources, "group", id=gid)
    _nvset(group, "meta_attributes", f"{gid}-meta",
           [("resource-stickiness", str(STICKINESS[target.failback])),
            ("priority", str(TARGET_PRIORITY))])
    # All portals in one resource, so a move adds them at once; named ip0 as when a
    # target had one, which keeps a running one-portal target's resource as it was.
    rsc = f"{gid}-ip0"
    prim = _primitive(group, rsc, "ocf", "address", "iscsiha", [
        ("ip", " ".join(str(p.address) for p in target.portals)),
        ("cidr_netmask", _same_or_each(str(config.cluster.network(p.network).subnet.prefixlen)
                                       for p in target.portals)),
        ("port", _same_or_each(str(p.port) for p in target.portals))])
    _ops(prim, rsc, AGENT_OPS)
    params = TargetParams(
        iqn=target.iqn,
        portals=tuple(PortalParam(p.address, p.port) for p in target.portals),
        luns=tuple(
            LunParam(lun.number, lun.volume, res.volumes[lun.volume].device,
                     lun_identity(target.iqn, lun.volume).serial)
            for lun in sorted(target.luns, key=lambda lun: lun.number)),
        initiators=target.initiators,
        allow_any_initiator=target.allow_any_initiator,
        auth=_auth_params(target.auth),
        reservations=slot.device if (slot := res.reservations_slot) else None,
    )
    lio = _primitive(group, f"{gid}-lio", "ocf", "target", "iscsiha", params.to_params())
    _ops(lio, f"{gid}-lio", AGENT_OPS)

    ET.SubElement(constraints, "rsc_location", id=f"{gid}-prefers-{target.preferred_node}",
                  rsc=gid, node=target.preferred_node, score=str(PREFERRED_SCORE))
    pinged = sorted({config.cluster.network(p.network) for p in target.portals
                     if config.cluster.network(p.network).ping}, key=lambda n: n.name)
    if pinged:
        _needs_storage(constraints, gid, pinged)
    if discovery:
        # No target answers before discovery is protected on its box.
        ET.SubElement(constraints, "rsc_order", id=f"{gid}-after-discovery",
                      first="lio-discovery-clone", then=gid, kind="Mandatory")
    # Only the target waits for the promotion (and stops before the demotion): its
    # addresses, port blocked, move in parallel with DRBD (docs/failover.md).
    with_promoted_drbd(constraints, gid, target.name, then=lio.get("id", ""))


def _same_or_each(values: Iterable[str]) -> str:
    """One value when all portals share it (as a one-portal target always did), else each."""
    listed = list(values)
    return listed[0] if len(set(listed)) == 1 else " ".join(listed)


def _needs_storage(constraints: ET.Element, gid: str, nets: list[Network]) -> None:
    """The target leaves a box that reaches none of its portals' ping hosts. With portals
    on several storage networks (multipath), losing some of them costs the initiators a
    path, not the target a move: their other paths carry the I/O without a pause."""
    # Finite, so when both boxes lose the hosts (the switch reboots) the target stays
    # where it is instead of stopping everywhere.
    name = f"{gid}-needs-{nets[0].name}" if len(nets) == 1 else f"{gid}-needs-storage-path"
    loc = ET.SubElement(constraints, "rsc_location", id=name, rsc=gid)
    if len(nets) == 1:
        outer = ET.SubElement(loc, "rule", {"id": f"{name}-rule", "score": str(NO_PING_SCORE),
                                            "boolean-op": "or"})
        _unreached(outer, name, nets[0])
        return
    outer = ET.SubElement(loc, "rule", {"id": f"{name}-rule", "score": str(NO_PING_SCORE),
                                        "boolean-op": "and"})
    for net in nets:
        prefix = f"{name}-{net.name}"
        _unreached(ET.SubElement(outer, "rule", {"id": f"{prefix}-rule", "boolean-op": "or"}),
                   prefix, net)


def _unreached(rule: ET.Element, prefix: str, net: Network) -> None:
    """True where the box's ping of ``net`` reached no host (or has not reported yet)."""
    ET.SubElement(rule, "expression", id=f"{prefix}-undefined",
                  attribute=ping_attribute(net), operation="not_defined")
    ET.SubElement(rule, "expression", id=f"{prefix}-zero",
                  attribute=ping_attribute(net), operation="lt", value="1", type="integer")


def with_promoted_drbd(constraints: ET.Element, gid: str, target: str,
                       then: str | None = None) -> None:
    """The group runs where the target's DRBD resource is Primary; ``then`` (the group
    unless given) starts once it was promoted."""
    clone = drbd_clone_id(target)
    ET.SubElement(constraints, "rsc_colocation", {
        "id": f"{gid}-with-drbd", "rsc": gid, "with-rsc": clone,
        "with-rsc-role": "Promoted", "score": "INFINITY"})
    ET.SubElement(constraints, "rsc_order", {
        "id": f"{gid}-after-drbd", "first": clone, "first-action": "promote",
        "then": then or gid, "then-action": "start", "kind": "Mandatory"})


def _auth_params(auth: Auth) -> AuthParams:
    return AuthParams(auth.mode, auth.initiator.user if auth.initiator else None,
                      auth.target.user if auth.target else None)


def _primitive(parent: ET.Element, rid: str, cls: str, kind: str, provider: str | None,
               params: Iterable[tuple[str, str]]) -> ET.Element:
    attrs = {"id": rid, "class": cls}
    if provider:
        attrs["provider"] = provider
    attrs["type"] = kind
    prim = ET.SubElement(parent, "primitive", attrs)
    _nvset(prim, "instance_attributes", f"{rid}-params", params)
    return prim


def _ops(prim: ET.Element, rid: str,
         ops: Iterable[tuple[str, str, str, str | None]]) -> None:
    el = ET.SubElement(prim, "operations")
    for name, interval, timeout, role in ops:
        oid = f"{rid}-{name}-{interval}" + (f"-{role.lower()}" if role else "")
        attrs = {"id": oid, "name": name, "interval": interval, "timeout": timeout}
        if role:
            attrs["role"] = role
        ET.SubElement(el, "op", attrs)


def _nvset(parent: ET.Element, tag: str, sid: str,
           pairs: Iterable[tuple[str, str]]) -> ET.Element:
    el = ET.SubElement(parent, tag, id=sid)
    for name, value in pairs:
        ET.SubElement(el, "nvpair", id=f"{sid}-{name}", name=name, value=value)
    return el


def nvpairs(el: ET.Element | None) -> dict[str, str]:
    """name -> value of the nvpairs under ``el`` (an attributes set or a whole resource)."""
    if el is None:
        return {}
    return {nv.get("name", ""): nv.get("value", "") for nv in el.iter("nvpair")}
