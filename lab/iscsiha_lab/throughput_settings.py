"""The throughput benchmark's tunables, pure: `--drbd`, `--iscsi` and `--initiator`
parsed against allow-lists (integer values in a range), the commands that apply them for
one run, and the boxes' answers about what is in force read back.

What each touches (all undone by the bench's cleanup, which deletes the bench target):
- --drbd: the bench resource on both boxes at run time, `drbdadm -- --NAME=V net-options`
  or `disk-options` (DRBD 8.4 units: sndbuf/rcvbuf bytes, rates KiB/s, c-plan-ahead and
  c-delay-target 0.1 s, c-fill-target sectors); the desired state has no such knob.
- --iscsi: the bench target's TPG parameters in LIO's configfs on the serving box, before
  the initiator logs in (they are negotiated at login). The target agent re-creates the
  target on a move or restart without them, so a run that moves the target loses them.
- --initiator: the initiator's node record of the bench target (iscsiadm -o update),
  before login.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field

from iscsiha.errors import IscsihaError, Report
from iscsiha.executors.lio import TPG_TAG

# name -> (lowest, highest): DRBD 8.4's own limits (drbdsetup refuses the rest anyway).
DRBD_NET = {"max-buffers": (32, 131072), "max-epoch-size": (1, 20000),
            "sndbuf-size": (0, 10485760), "rcvbuf-size": (0, 10485760)}
DRBD_DISK = {"al-extents": (7, 65534), "resync-rate": (1, 4194304),
             "c-plan-ahead": (0, 300), "c-fill-target": (0, 1048576),
             "c-delay-target": (1, 100), "c-max-rate": (250, 4194304),
             "c-min-rate": (0, 4194304)}
# RFC 7143's ranges for the LIO TPG parameters that are numbers.
ISCSI = {"MaxBurstLength": (512, 16777215), "FirstBurstLength": (512, 16777215),
         "MaxRecvDataSegmentLength": (512, 16777215),
         "MaxXmitDataSegmentLength": (512, 16777215), "MaxOutstandingR2T": (1, 65535)}
# open-iscsi's node settings (iscsid.conf's ranges).
INITIATOR = {"node.session.cmds_max": (2, 2048), "node.session.queue_depth": (1, 1024),
             "node.session.iscsi.MaxBurstLength": (512, 16777215),
             "node.session.iscsi.FirstBurstLength": (512, 16777215),
             "node.conn[0].iscsi.MaxRecvDataSegmentLength": (512, 16777215),
             "node.conn[0].iscsi.MaxXmitDataSegmentLength": (0, 16777215)}
_DIGITS = re.compile(r"[0-9]{1,9}")  # no sign, no 0x, no exponent, no spaces


@dataclass(frozen=True)
class Settings:
    drbd: dict[str, int] = field(default_factory=dict)
    iscsi: dict[str, int] = field(default_factory=dict)
    initiator: dict[str, int] = field(default_factory=dict)


def parse_settings(drbd: str, iscsi: str, initiator: str) -> Settings:
    """The three options' NAME=VALUE lists, or every problem in them at once."""
    problems: list[Report] = []
    parsed = [_pairs(text, option, allowed, problems) for text, option, allowed in (
        (drbd, "--drbd", DRBD_NET | DRBD_DISK), (iscsi, "--iscsi", ISCSI),
        (initiator, "--initiator", INITIATOR))]
    chosen = parsed[1]
    if ("FirstBurstLength" in chosen and "MaxBurstLength" in chosen
            and chosen["FirstBurstLength"] > chosen["MaxBurstLength"]):
        problems.append(Report("bad-setting", "--iscsi FirstBurstLength",
                               chosen["FirstBurstLength"], "at most MaxBurstLength "
                               f"({chosen['MaxBurstLength']}), as RFC 7143 requires"))
    cmds = parsed[2].get("node.session.cmds_max")
    if cmds is not None and cmds & (cmds - 1):
        problems.append(Report("bad-setting", "--initiator node.session.cmds_max", cmds,
                               "a power of two from 2 to 2048 (open-iscsi rounds others)"))
    if problems:
        raise IscsihaError(problems)
    return Settings(*parsed)


def _pairs(text: str, option: str, allowed: Mapping[str, tuple[int, int]],
           problems: list[Report]) -> dict[str, int]:
    out: dict[str, int] = {}
    names = ", ".join(allowed)
    for item in (w.strip() for w in text.split(",")) if text.strip() else ():
        name, eq, value = item.partition("=")
        name, value = name.strip(), value.strip()
        if not eq or name not in allowed:
            problems.append(Report("unknown-setting", option, item[:80],
                                   f"NAME=VALUE, comma-separated, NAME one of: {names}"))
            continue
        if name in out:
            problems.append(Report("duplicate-setting", option, name, "each name once"))
            continue
        low, high = allowed[name]
        if not _DIGITS.fullmatch(value) or not low <= int(value) <= high:
            problems.append(Report("bad-setting", f"{option} {name}", value[:80],
                                   f"a whole number from {low} to {high}"))
            continue
        out[name] = int(value)
    return out


def as_dict(settings: Settings) -> dict[str, dict[str, int]]:
    return {"drbd": settings.drbd, "iscsi": settings.iscsi, "initiator": settings.initiator}


def drbd_commands(settings: Settings, resource: str) -> list[list[str]]:
    """The drbdadm commands that put the --drbd settings in force on a box."""
    commands = []
    for verb, group in (("net-options", DRBD_NET), ("disk-options", DRBD_DISK)):
        flags = [f"--{k}={v}" for k, v in settings.drbd.items() if k in group]
        if flags:
            commands.append(["drbdadm", "--", *flags, verb, resource])
    return commands


def tpg_dir(iqn: str) -> str:
    return f"/sys/kernel/config/target/iscsi/{iqn}/tpgt_{TPG_TAG}/param"


def drbd_shown(show: str, names: Mapping[str, object]) -> dict[str, str | None]:
    """The values `drbdsetup show` gives for ``names`` (None: not shown, so DRBD's
    default, or the option unknown to this DRBD)."""
    out: dict[str, str | None] = {}
    for name in names:
        found = re.search(rf"^\s*{re.escape(name)}\s+([^;\s]+)\s*;", show, re.MULTILINE)
        out[name] = found[1] if found else None
    return out


_NEGOTIATED = ("HeaderDigest", "DataDigest", "MaxRecvDataSegmentLength",
               "MaxXmitDataSegmentLength", "FirstBurstLength", "MaxBurstLength",
               "ImmediateData", "InitialR2T", "MaxOutstandingR2T")


def negotiated(session_p2: str, target: str) -> dict[str, str]:
    """The iSCSI parameters the session with ``target`` negotiated, from `iscsiadm -m
    session -P 2`; empty when there is no such session."""
    out: dict[str, str] = {}
    inside = False
    for line in session_p2.splitlines():
        line = line.strip()
        if line.startswith("Target:"):
            inside = line.split()[1:2] == [target]
        elif inside and ":" in line:
            key, _, value = line.partition(":")
            if key.strip() in _NEGOTIATED and key.strip() not in out:
                out[key.strip()] = value.strip()
    return out
