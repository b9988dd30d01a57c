"""`iscsiha-fence-ipmitool`: ipmitool for fence_ipmilan, with the BMC password kept out
of every command line.

fence_ipmilan puts the password it is given on ipmitool's command line (`-P PASSWORD`,
fence-agents agents/ipmilan/fence_ipmilan.py, create_command; a `password_script`'s
output goes the same way), where any local user reads it in /proc/PID/cmdline until
ipmitool blanks it after parsing its options. So the CIB gives fence_ipmilan no
password (it then passes `-P ''`) and this program as its `ipmitool_path`. This finds
the fence device by the BMC address fence_ipmilan passes (`-H`) in this box's desired
state, reads the device's password from Pacemaker's lrm:// store where apply wrote it
(checked against its MD5, as Pacemaker checks it), and runs ipmitool with `-E`: the
password in IPMI_PASSWORD, an environment only root can read.

Before that it sends the BMC an RMCP presence ping (which IPMI over LAN requires a BMC to
answer): a BMC that died with its box never answers, and ipmitool's own retries then
took 15 s or more per call, delaying the fencing topology's watchdog level by as much.

Only the standard library: fencing must not depend on the rest of the package loading.
"""

from __future__ import annotations

import contextlib
import hashlib
import ipaddress
import os
import socket
import sys
import time
import tomllib
from collections.abc import Mapping, Sequence
from pathlib import Path

IPMITOOL = "/usr/bin/ipmitool"
# The same paths as iscsiha.commands.node_steps (a unit test keeps them equal).
DESIRED_PATH = "/etc/iscsiha/desired.toml"
SECRETS_DIR = "/var/lib/pacemaker/lrm/secrets"
PARAMETER = "password"  # the fence device's parameter the secret is stored under
IPMI_PORT = 623
# Four pings over 2 s: a BMC on the management LAN answers within milliseconds, and a
# lost datagram or two still leaves one to answer.
PING_TRIES = 4
PING_INTERVAL_S = 0.5
# RMCP header (version 6, no ACK, class ASF) then the ASF presence ping: IANA 4542
# (the ASF enterprise number), type 0x80, the message tag, no data.
_RMCP_ASF = bytes((0x06, 0x00, 0xFF, 0x06)) + (4542).to_bytes(4, "big")
_PING = 0x80
_PONG = 0x40


class FenceError(Exception):
    """Why ipmitool was not run; printed for fence_ipmilan's log, never with a secret."""


def fence_device(node: str) -> str:
    return f"fence-{node}"


def _same_address(a: str, b: str) -> bool:
    try:
        return ipaddress.ip_address(a) == ipaddress.ip_address(b)
    except ValueError:
        return a == b


def option_value(args: Sequence[str], option: str) -> str | None:
    """The value after ``option`` (ipmitool takes `-H ADDRESS`), or None."""
    for i, word in enumerate(args[:-1]):
        if word == option:
            return args[i + 1]
    return None


def device_for(desired_text: str, host: str) -> str:
    """The fence device (resource id) of the node whose BMC is ``host``."""
    try:
        nodes = tomllib.loads(desired_text).get("nodes", [])
    except tomllib.TOMLDecodeError as exc:
        raise FenceError(f"{DESIRED_PATH} cannot be read as TOML: {exc}") from exc
    known = []
    for node in nodes if isinstance(nodes, list) else []:
        bmc = node.get("bmc") if isinstance(node, dict) else None
        if isinstance(bmc, dict) and isinstance(bmc.get("address"), str):
            known.append(bmc["address"])
            if _same_address(bmc["address"], host) and isinstance(node.get("name"), str):
                return fence_device(node["name"])
    raise FenceError(f"no node in {DESIRED_PATH} has the BMC {host!r} "
                     f"(known: {', '.join(known) or 'none'})")


def read_password(secrets_dir: Path, device: str) -> str:
    """The device's password as Pacemaker's lrm:// store holds it, its MD5 checked."""
    folder = secrets_dir / device
    try:
        value = (folder / PARAMETER).read_bytes()
        sign = (folder / f"{PARAMETER}.sign").read_text().strip()
    except OSError as exc:
        raise FenceError(f"cannot read the {PARAMETER} of {device} in {folder}: "
                         f"{exc.strerror}") from exc
    if hashlib.md5(value, usedforsecurity=False).hexdigest() != sign:
        raise FenceError(f"the {PARAMETER} of {device} in {folder} does not match its "
                         f".sign (half written?); run `iscsiha apply` again")
    return value.decode()


def ping_packet(tag: int) -> bytes:
    return _RMCP_ASF + bytes((_PING, tag, 0x00, 0x00))


def is_pong(data: bytes, tag: int) -> bool:
    """Whether ``data`` is the presence pong that answers the ping tagged ``tag``."""
    return len(data) >= 12 and data[:8] == _RMCP_ASF and data[8] == _PONG and data[9] == tag


def bmc_answers(host: str, port: int = IPMI_PORT, tries: int = PING_TRIES,
                interval: float = PING_INTERVAL_S) -> bool:
    """Whether the BMC answers a presence ping within ``tries`` * ``interval`` seconds."""
    try:
        info = socket.getaddrinfo(host, port, type=socket.SOCK_DGRAM)[0]
    except (OSError, UnicodeError):
        return False
    with socket.socket(info[0], socket.SOCK_DGRAM) as sock:
        for tag in range(tries):
            with contextlib.suppress(OSError):  # no route yet: the next try may have one
                sock.sendto(ping_packet(tag), info[4])
            deadline = time.monotonic() + interval
            while (left := deadline - time.monotonic()) > 0:
                sock.settimeout(left)
                try:
                    data, _ = sock.recvfrom(512)
                except TimeoutError:
                    break
                except OSError:  # an ICMP error for an earlier try: keep waiting
                    continue
                # A late pong to an earlier try counts too.
                if any(is_pong(data, t) for t in range(tag + 1)):
                    return True
    return False


def ipmitool_argv(args: Sequence[str], ipmitool: str = IPMITOOL) -> list[str]:
    """fence_ipmilan's ipmitool arguments with `-P VALUE` replaced by `-E`."""
    kept: list[str] = []
    skip = False
    for word in args:
        if skip:
            skip = False
        elif word == "-P":
            skip = True
        elif word != "-E":
            kept.append(word)
    return [ipmitool, "-E", *kept]


def bmc_of(args: Sequence[str]) -> tuple[str, int]:
    """The BMC's address and port among fence_ipmilan's arguments (`-H`, `-p`)."""
    host = option_value(args, "-H")
    if host is None:
        raise FenceError("no BMC address (-H) among the arguments fence_ipmilan passed")
    port_text = option_value(args, "-p")
    if port_text is None:
        return host, IPMI_PORT
    if not (port_text.isascii() and port_text.isdigit()) or not 0 < int(port_text) < 65536:
        raise FenceError(f"the BMC port (-p) {port_text!r} is not a port number (1-65535)")
    return host, int(port_text)


def prepare(args: Sequence[str], desired_text: str, secrets_dir: Path,
            environ: Mapping[str, str]) -> tuple[list[str], dict[str, str]]:
    """The argv and environment to exec ipmitool with."""
    host, _ = bmc_of(args)
    password = read_password(secrets_dir, device_for(desired_text, host))
    env = {k: v for k, v in environ.items() if k not in ("IPMI_PASSWORD", "IPMITOOL_PASSWORD")}
    # ipmitool -E reads IPMITOOL_PASSWORD first, then IPMI_PASSWORD.
    env["IPMI_PASSWORD"] = password
    return ipmitool_argv(args), env


def main(argv: Sequence[str] | None = None) -> int:
    args = list(sys.argv[1:] if argv is None else argv)
    try:
        desired = Path(DESIRED_PATH).read_text()
    except OSError as exc:
        print(f"iscsiha-fence-ipmitool: cannot read {DESIRED_PATH}: {exc.strerror}",
              file=sys.stderr)
        return 1
    try:
        exec_argv, env = prepare(args, desired, Path(SECRETS_DIR), os.environ)
        host, port = bmc_of(args)
        if not bmc_answers(host, port):
            raise FenceError(f"the BMC {host} (UDP port {port}) does not answer an RMCP "
                             f"presence ping ({PING_TRIES} in "
                             f"{PING_TRIES * PING_INTERVAL_S:g} s): unreachable or "
                             f"without power, so not asked")
    except FenceError as exc:
        print(f"iscsiha-fence-ipmitool: {exc}", file=sys.stderr)
        return 1
    try:
        os.execve(exec_argv[0], exec_argv, env)
    except OSError as exc:
        print(f"iscsiha-fence-ipmitool: cannot run {exec_argv[0]}: {exc.strerror}",
              file=sys.stderr)
    return 1


if __name__ == "__main__":
    sys.exit(main())
