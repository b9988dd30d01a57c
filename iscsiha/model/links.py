"""A node's links: the NIC, bond or VLAN that carries each network of the model.

    links = { link0 = "eno1", link1 = "eno2", repl = "bond0", storage = "bond0.30" }
    bonds = { bond0 = { members = ["ens1f0", "ens1f1"], mode = "802.3ad" } }

Without `links` the box's links are not the desired state's to set.
"""

from __future__ import annotations

import re
from collections import defaultdict
from collections.abc import Mapping

from iscsiha.model.fields import BONDS, LINKS, MEMBERS, MODE, Problems, Table
from iscsiha.model.types import Bond, BondMode, Link

# The kernel's limit is 15 bytes; the characters are those networkd and udev names use
# that need no quoting anywhere (a '.' only between a device and its VLAN).
IFNAME_MAX = 15
_IFNAME = re.compile(r"[A-Za-z][A-Za-z0-9_-]*")
INTERFACE_NAME_ALLOWED = (f"a network interface name: a letter, then letters, digits, '_' "
                          f"or '-', at most {IFNAME_MAX} characters (eno1, ens1f0, bond0)")
LINK_ALLOWED = ("a NIC or a bond of this node (eno1, bond0), with .VLAN for a tagged "
                "VLAN (bond0.30; VLAN 1 to 4094), at most 15 characters in all")
VLAN_MAX = 4094
MAX_BOND_MEMBERS = 8
_BOND_MODES = {m.value: m for m in BondMode}


def interface_name_ok(name: str) -> bool:
    return len(name) <= IFNAME_MAX and _IFNAME.fullmatch(name) is not None


def parse_link(network: str, text: str) -> Link | None:
    """``eno1`` or ``bond0.30``; None when it is neither."""
    device, dot, vlan_text = text.partition(".")
    if len(text) > IFNAME_MAX or not interface_name_ok(device):
        return None
    if not dot:
        return Link(network, device)
    if not vlan_text.isdigit() or not 1 <= int(vlan_text) <= VLAN_MAX \
            or vlan_text != str(int(vlan_text)):
        return None
    return Link(network, device, int(vlan_text))


def read_links(node: Table, mtus: Mapping[str, int],
               problems: Problems) -> tuple[tuple[Link, ...], tuple[Bond, ...]] | None:
    """The node's links and bonds, ((), ()) when it has none, None after a problem.

    ``mtus``: each network the links may name, in order, with its MTU.
    """
    before = len(problems.reports)
    links_t = node.table(LINKS, required=False)
    bonds_t = node.table(BONDS, required=False)
    bonds = _bonds(bonds_t, problems) if bonds_t is not None else []
    if links_t is None:
        if bonds:
            problems.add("bonds-without-links", node.child(BONDS), sorted(b.name for b in bonds),
                         f"bonds only with {LINKS}, which say what each bond carries")
        return None if len(problems.reports) > before else ((), ())
    links = []
    for name in mtus:
        text = links_t.typed(name, str)
        if text is None:
            continue
        link = parse_link(name, text)
        if link is None:
            problems.add("bad-link", links_t.child(name), text, LINK_ALLOWED)
        else:
            links.append(link)
    known = set(mtus)
    for key in sorted(set(links_t.data) - known):
        links_t.seen.add(key)
        problems.add("unknown-network", links_t.child(key), key, ", ".join(sorted(known)))
    _check_devices(node, links, bonds, mtus, problems)
    if len(problems.reports) > before:
        return None
    return tuple(links), tuple(bonds)


def _bonds(t: Table, problems: Problems) -> list[Bond]:
    out = []
    for name in sorted(t.data):
        bond_t = t.table(name)
        if bond_t is None:
            continue
        if not interface_name_ok(name):
            problems.add("bad-name", t.child(name), name, INTERFACE_NAME_ALLOWED)
            continue
        members = bond_t.strings(MEMBERS)
        mode = bond_t.choice(MODE, _BOND_MODES, default=BondMode.ACTIVE_BACKUP)
        bond_t.finish()
        if not members and bond_t.data.get(MEMBERS) is not None:
            problems.add("bond-without-members", bond_t.child(MEMBERS), [],
                         f"1 to {MAX_BOND_MEMBERS} NICs")
            continue
        if len(members) > MAX_BOND_MEMBERS:
            problems.add("too-many-bond-members", bond_t.child(MEMBERS), len(members),
                         f"1 to {MAX_BOND_MEMBERS} NICs")
            continue
        bad = [(path, m) for path, m in members if not interface_name_ok(m)]
        for path, member in bad:
            problems.add("bad-name", path, member, INTERFACE_NAME_ALLOWED)
        if members and not bad and mode is not None:
            out.append(Bond(name, tuple(m for _, m in members), mode))
    return out


def _check_devices(node: Table, links: list[Link], bonds: list[Bond],
                   mtus: Mapping[str, int], problems: Problems) -> None:
    """What cannot work on one box: a NIC in two places, two untagged networks on one
    device, a VLAN twice, a VLAN larger than the untagged network under it."""
    where = node.child(LINKS)
    member_of: dict[str, str] = {}
    for bond in bonds:
        for member in bond.members:
            if member in member_of or member in {b.name for b in bonds}:
                problems.add("nic-in-two-bonds", f"{node.child(BONDS)}.{bond.name}", member,
                             "each NIC in one bond at most",
                             f"is also in {member_of.get(member, member)}")
            member_of[member] = bond.name
    on_device: dict[str, list[Link]] = defaultdict(list)
    for link in links:
        on_device[link.device].append(link)
        if link.device in member_of:
            problems.add("link-on-bond-member", f"{where}.{link.network}", link.interface,
                         f"the bond {member_of[link.device]}, not one of its members")
    for bond in bonds:
        if bond.name not in on_device:
            problems.add("unused-bond", f"{node.child(BONDS)}.{bond.name}", bond.name,
                         f"a bond that a network of {LINKS} uses")
    for device, carried in on_device.items():
        untagged = [lk for lk in carried if lk.vlan is None]
        if len(untagged) > 1:
            problems.add("two-untagged-networks", f"{where}.{untagged[1].network}", device,
                         "one untagged network per device; tag the others with .VLAN",
                         f"also carries {untagged[0].network}")
        vlans: dict[int, str] = {}
        for link in carried:
            if link.vlan is None:
                continue
            if link.vlan in vlans:
                problems.add("duplicate-vlan", f"{where}.{link.network}", link.interface,
                             "each VLAN of a device once", f"also carries {vlans[link.vlan]}")
            vlans[link.vlan] = link.network
        if untagged and vlans:
            base = mtus[untagged[0].network]
            larger = [n for n in vlans.values() if mtus[n] > base]
            if larger:
                problems.add("mtu-above-parent", f"{where}.{larger[0]}", mtus[larger[0]],
                             f"at most the MTU of {untagged[0].network} ({base}), the "
                             f"untagged network of {device}, which its VLANs share")
