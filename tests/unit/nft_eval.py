"""A tiny evaluator for the nft rules plan/firewall.py writes, to test the policy by outcome.

It understands exactly the statements that module emits (address and port
matches, l4proto sets, ct state, iif, counter, accept/drop/jump) and refuses
anything else, so a new kind of rule cannot be silently misjudged here.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from ipaddress import ip_address, ip_network


@dataclass(frozen=True)
class Packet:
    src: str
    dst: str
    proto: str  # "tcp", "udp", "icmp"
    dport: int = 0
    sport: int = 40000
    iif: str = "eth0"
    ct: str = "new"  # "new", "established", "related", "invalid"


def chains(text: str) -> dict[str, list[str]]:
    """Chain name -> its rules (comments and the hook line left out)."""
    out: dict[str, list[str]] = {}
    current: list[str] | None = None
    for raw in text.splitlines():
        line = raw.strip()
        if m := re.fullmatch(r"chain (\w+) \{", line):
            current = out.setdefault(m[1], [])
        elif line == "}":
            current = None
        elif current is not None and line and not line.startswith(("#", "type ")):
            current.append(line)
    return out


def verdict(text: str, packet: Packet) -> str:
    """"accept" or "drop" for a packet arriving on the input hook."""
    return _run(chains(text), "input", packet) or "drop"  # the input chain's policy


def _run(rules: dict[str, list[str]], chain: str, p: Packet) -> str | None:
    for rule in rules[chain]:
        words = rule.replace("{ ", "{").replace(" }", "}").replace(", ", ",").split()
        i, matched = 0, True
        while matched and i < len(words):
            w = words[i]
            if w in ("accept", "drop"):
                return w
            if w == "jump":
                result = _run(rules, words[i + 1], p)
                if result is not None:
                    return result
                break
            if w == "counter":
                i += 1
            elif w in ("ip", "ip6"):
                field, value = words[i + 1], words[i + 2]
                addr = ip_address(p.src if field == "saddr" else p.dst)
                matched = addr in ip_network(value, strict=False)
                i += 3
            elif w in ("tcp", "udp"):
                port = p.dport if words[i + 1] == "dport" else p.sport
                matched = p.proto == w and _port_in(port, words[i + 2])
                i += 3
            elif w == "meta" and words[i + 1] == "l4proto":
                matched = _proto(p) in words[i + 2].strip("{}").split(",")
                i += 3
            elif w == "ct" and words[i + 1] == "state":
                matched = p.ct in words[i + 2].split(",")
                i += 3
            elif w == "iif":
                matched = p.iif == words[i + 1].strip('"')
                i += 2
            else:
                raise ValueError(f"nft_eval does not understand {w!r} in: {rule}")
    return None


def _proto(p: Packet) -> str:
    if p.proto != "icmp":
        return p.proto
    return "icmp" if ip_address(p.src).version == 4 else "ipv6-icmp"


def _port_in(port: int, spec: str) -> bool:
    for part in spec.strip("{}").split(","):
        first, _, last = part.partition("-")
        if int(first) <= port <= int(last or first):
            return True
    return False
