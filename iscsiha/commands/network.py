"""This box's networks: edit its network file, apply it as a trial, confirm or revert.

Edits change /etc/iscsiha/network.toml only (checked as a whole; nothing is written
on a bad value). `apply` makes the networkd files match it and starts a waiter that
puts the previous files back at the deadline unless `confirm` comes first, as
`netplan try` does: a change that cuts the admin off undoes itself.
"""

from __future__ import annotations

import os
import time
import tomllib
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from ipaddress import ip_address
from typing import Any

from iscsiha.commands.bootstrap_params import HeldAddress
from iscsiha.errors import IscsihaError
from iscsiha.executors import files
from iscsiha.executors.networkd import Networkd, Trial, wait_and_revert
from iscsiha.executors.runner import Runner
from iscsiha.model import box_network
from iscsiha.model.box_network import DNS, GATEWAY, BoxNetworks
from iscsiha.model.fields import ADDRESSES, BONDS, LINKS, MEMBERS, MODE, MTU
from iscsiha.plan.networkd import box_files

REVERT_UNIT = "iscsiha-network-revert.service"
ISCSIHA = "/usr/bin/iscsiha"
WITHIN_DEFAULT, WITHIN_MIN, WITHIN_MAX = 120, 10, 3600
SYS_NET = "/sys/class/net"
ADDRESS_WAIT = 20.0  # networkd configures links after `reconfigure` returns


@dataclass
class NetworkEnv:
    """What the commands touch; tests give a temporary root and fakes."""

    networkd: Networkd
    start_waiter: Callable[[Sequence[str], float], None]  # argv, seconds it may run
    own_addresses: Callable[[], list[HeldAddress]]
    box_file: str = box_network.PATH
    sys_net: str = SYS_NET
    ssh_connection: str | None = None  # $SSH_CONNECTION of the admin's session
    address_wait: float = ADDRESS_WAIT


def real_env() -> NetworkEnv:
    from iscsiha.executors.addresses import Addresses
    from iscsiha.executors.systemd import Systemd

    def own() -> list[HeldAddress]:
        with Addresses() as addresses:
            return list(addresses.own())

    def start(argv: Sequence[str], seconds: float) -> None:
        Systemd().start_transient(REVERT_UNIT, argv, "iscsiha: revert an unconfirmed "
                                  "network change at its deadline", seconds)

    return NetworkEnv(Networkd(Runner()), start, own,
                      ssh_connection=os.environ.get("SSH_CONNECTION"))


# -- the file ----------------------------------------------------------------------

def read_data(env: NetworkEnv) -> dict[str, Any]:
    raw = files.read(env.box_file)
    if raw is None:
        return {}
    try:
        return tomllib.loads(raw.decode())
    except (tomllib.TOMLDecodeError, UnicodeDecodeError, RecursionError, ValueError) as exc:
        raise IscsihaError.single("config-syntax", env.box_file, str(exc)[:300],
                                  "valid TOML (https://toml.io)", "cannot be read") from exc


def load(env: NetworkEnv) -> BoxNetworks:
    return box_network.load_data(read_data(env))


def _save(env: NetworkEnv, data: dict[str, Any]) -> BoxNetworks:
    """Check the whole edited file, then write it; nothing is written when it is bad."""
    box = box_network.load_data(data)
    files.write_atomic(env.box_file, box_network.to_text(data).encode(), 0o644)
    return box


def set_network(env: NetworkEnv, name: str, link: str, address: str, mtu: int | None = None,
                gateway: str | None = None) -> BoxNetworks:
    """Add or replace network ``name`` of this box."""
    data = read_data(env)
    data.setdefault(ADDRESSES, {})[name] = address
    data.setdefault(LINKS, {})[name] = link
    for key, value in ((MTU, mtu), (GATEWAY, gateway)):
        table = data.setdefault(key, {})
        if value is None:
            table.pop(name, None)
        else:
            table[name] = value
    return _save(env, data)


def delete_network(env: NetworkEnv, name: str) -> BoxNetworks:
    data = read_data(env)
    if name not in data.get(ADDRESSES, {}):
        raise IscsihaError.single("unknown-network", "network", name,
                                  ", ".join(data.get(ADDRESSES, {})) or "none is set")
    for key in (ADDRESSES, LINKS, MTU, GATEWAY):
        data.get(key, {}).pop(name, None)
    return _save(env, data)


def set_bond(env: NetworkEnv, name: str, members: Sequence[str],
             mode: str | None = None) -> BoxNetworks:
    data = read_data(env)
    bond: dict[str, Any] = {MEMBERS: list(members)}
    if mode is not None:
        bond[MODE] = mode
    data.setdefault(BONDS, {})[name] = bond
    return _save(env, data)


def delete_bond(env: NetworkEnv, name: str) -> BoxNetworks:
    data = read_data(env)
    if name not in data.get(BONDS, {}):
        raise IscsihaError.single("unknown-bond", "bond", name,
                                  ", ".join(data.get(BONDS, {})) or "none is set")
    del data[BONDS][name]
    return _save(env, data)


def set_dns(env: NetworkEnv, servers: Sequence[str]) -> BoxNetworks:
    data = read_data(env)
    data[DNS] = list(servers)
    return _save(env, data)


# -- applying ----------------------------------------------------------------------

def planned(box: BoxNetworks) -> dict[str, str]:
    return {os.path.basename(f.path): f.content for f in box_files(box)}


def check_box(env: NetworkEnv, box: BoxNetworks) -> None:
    """What the box itself must allow: its NICs exist, and the admin's own session
    keeps its address."""
    bonds = {b.name for b in box.bonds}
    nics = sorted({lk.device for lk in box.links if lk.device not in bonds}
                  | {m for b in box.bonds for m in b.members})
    present = set(os.listdir(env.sys_net)) if os.path.isdir(env.sys_net) else set()
    missing = [n for n in nics if n not in present]
    if missing:
        raise IscsihaError.single("no-such-nic", "link", ", ".join(missing),
                                  f"a NIC of this box: {', '.join(sorted(present - {'lo'}))}",
                                  "is not in /sys/class/net")
    if not env.ssh_connection:
        return
    parts = env.ssh_connection.split()
    try:
        here = ip_address(parts[2]) if len(parts) == 4 else None
    except ValueError:
        here = None
    holder = next((ifname for ifname, addr, _ in env.own_addresses() if addr == here), None)
    taken = ({lk.interface for lk in box.links} | {lk.device for lk in box.links}
             | {m for b in box.bonds for m in b.members})
    kept = {str(i.ip) for i in box.interfaces.values()}
    if holder is not None and holder in taken and str(here) not in kept:
        raise IscsihaError.single(
            "would-cut-session", "link", holder,
            f"a change that keeps {here} (your SSH session's address) on this box, or "
            "one made from another network or the local console",
            f"would take {holder} and drop {here}")


def apply(env: NetworkEnv, within: int = WITHIN_DEFAULT) -> Trial | None:
    """Make the networkd files match the box file, as a trial; None when they already do."""
    if not WITHIN_MIN <= within <= WITHIN_MAX:
        raise IscsihaError.single("bad-window", "within", within,
                                  f"{WITHIN_MIN} to {WITHIN_MAX} seconds")
    box = load(env)
    wanted = planned(box)
    if wanted == env.networkd.live() and env.networkd.trial() is None:
        return None
    check_box(env, box)
    trial = env.networkd.begin(wanted, within)
    try:
        env.start_waiter([ISCSIHA, "network", "revert", "--trial", trial.id, "--wait"],
                         within + 60)
    except IscsihaError:
        env.networkd.revert(trial.id)  # no waiter, no trial: never leave one unguarded
        raise
    return trial


def missing_addresses(env: NetworkEnv, box: BoxNetworks) -> list[str]:
    """Wait (bounded) for networkd to put every address on its link; those still missing."""
    where = {lk.network: lk.interface for lk in box.links}
    wanted = {(where[name], str(iface.ip)): f"{iface} on {where[name]}"
              for name, iface in box.addresses}
    deadline = time.monotonic() + env.address_wait
    while True:
        held = {(ifname, str(addr)) for ifname, addr, _ in env.own_addresses()}
        missing = [text for key, text in wanted.items() if key not in held]
        if not missing or time.monotonic() >= deadline:
            return missing
        time.sleep(0.2)


def confirm(env: NetworkEnv) -> Trial:
    return env.networkd.confirm()


def revert(env: NetworkEnv, trial_id: str | None = None, wait: bool = False,
           boot: bool = False) -> Trial | None:
    if wait:
        if trial_id is None:
            raise IscsihaError.single("missing-trial", "revert --wait", "",
                                      "--trial ID of the change to wait for")
        return wait_and_revert(env.networkd, trial_id)
    return env.networkd.revert(trial_id, apply=not boot)


# -- showing -----------------------------------------------------------------------

def nics(env: NetworkEnv) -> list[str]:
    """One line per link of the box: name, MAC, state and addresses, to tell which NIC
    is cabled where."""
    held: dict[str, list[str]] = {}
    for ifname, address, prefix in env.own_addresses():
        held.setdefault(ifname, []).append(f"{address}/{prefix}")
    names_ = sorted(os.listdir(env.sys_net)) if os.path.isdir(env.sys_net) else []
    lines = []
    for name in names_:
        if name == "lo" or "/" in name:
            continue
        mac, state = (_sys_value(env, name, key) for key in ("address", "operstate"))
        lines.append(f"{name:<15} {mac:<17} {state:<7} {' '.join(held.get(name, [])) or '-'}")
    return lines or ["no links found"]


def _sys_value(env: NetworkEnv, ifname: str, key: str) -> str:
    raw = files.read(os.path.join(env.sys_net, ifname, key)) or b""
    text = raw[:64].decode(errors="replace").strip()
    return text if text.isprintable() and text else "?"


def show(env: NetworkEnv) -> list[str]:
    box = load(env)
    mtus, gateways = dict(box.mtus), dict(box.gateways)
    links = {lk.network: lk.interface for lk in box.links}
    lines = [f"{name:<10} {iface!s:<22} on {links.get(name, '?'):<12} mtu {mtus[name]}"
             + (f"  gateway {gateways[name]}" if name in gateways else "")
             for name, iface in box.addresses] or ["no networks set: DHCP on every NIC"]
    lines += [f"bond {b.name}: {', '.join(b.members)} ({b.mode.value})" for b in box.bonds]
    if box.dns:
        lines.append(f"dns {', '.join(map(str, box.dns))}")
    lines.append(state_line(env, box))
    return lines


def state_line(env: NetworkEnv, box: BoxNetworks) -> str:
    trial = env.networkd.trial()
    if trial is not None:
        at = time.strftime("%H:%M:%S", time.localtime(trial.deadline))
        return (f"TRIAL {trial.id}: applied, put back at {at} ({trial.left():.0f} s) "
                "unless confirmed")
    if planned(box) == env.networkd.live():
        return "applied"
    return "CHANGED, not applied yet: apply, then confirm"
