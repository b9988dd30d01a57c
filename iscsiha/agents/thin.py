"""The OCF entry points' client of the agent helper, and the protocol both share.

Pacemaker starts ``ocf/address`` (and the others) for every action; importing the
agents, pyroute2 and rtslib costs a slow box a second or more per action, on the
failover's critical path. The helper (iscsiha.agents.helper) holds them loaded; this
module sends it one action and prints its answer. It imports only ``json``, ``os``,
``socket`` and ``sys``: a test holds it to that.

The fallback is running the action in this process, as before the helper existed,
and only while nothing was sent: once the request went out, the action may have
run, so a broken connection is reported as a failure, never run a second time.
"""

from __future__ import annotations

import json
import os
import socket
import sys

# Names for annotations only (mypy reads them): typing and collections cost a cold
# start time this module exists to save.
TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Mapping
    from typing import TextIO

SOCKET_PATH = "/run/iscsiha/agent-helper.sock"
AGENTS = ("address", "discovery", "target")
MAX_REQUEST = 256 * 1024  # bytes of JSON
MAX_VALUE = 64 * 1024  # characters of one environment value
MAX_KEY = 64  # characters after "OCF_"
MAX_ACTION = 32
MAX_REPLY = 4 * 1024 * 1024  # the helper's answer: metadata and messages, never data
CONNECT_TIMEOUT_S = 1.0
_KEY_CHARS = frozenset("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789_")
_ACTION_CHARS = frozenset("abcdefghijklmnopqrstuvwxyz0123456789-")
RC_GENERIC, RC_ARGS = 1, 2  # OCF's codes (iscsiha.agents.ocf.Rc, not imported: too heavy)


def env_key_ok(key: str) -> bool:
    """OCF_ and 1 to 64 ASCII letters, digits or underscores: all an agent reads."""
    rest = key[4:]
    return key.startswith("OCF_") and 0 < len(rest) <= MAX_KEY and set(rest) <= _KEY_CHARS


def env_value_ok(value: str) -> bool:
    return len(value) <= MAX_VALUE and "\0" not in value


def action_ok(action: str) -> bool:
    """Lower-case letters, digits and dashes, starting with a letter (meta-data, start)."""
    return (0 < len(action) <= MAX_ACTION and action[0].isalpha()
            and set(action) <= _ACTION_CHARS)


def encode_request(agent: str, argv: list[str], environ: Mapping[str, str]) -> bytes | None:
    """The request for the helper; None when it cannot carry this call (odd arguments,
    an OCF_ variable it would refuse, too large), which then runs here as before."""
    if agent not in AGENTS or len(argv) != 2 or not action_ok(argv[1]):
        return None
    env = {}
    for key, value in environ.items():
        if not key.startswith("OCF_"):
            continue  # the agents read only OCF_ variables
        if not env_key_ok(key) or not env_value_ok(value):
            return None
        env[key] = value
    data = json.dumps({"agent": agent, "argv1": argv[1], "env": env}).encode()
    return data if len(data) <= MAX_REQUEST else None


def decode_reply(data: bytes) -> tuple[int, str, str]:
    """rc, stdout and stderr from the helper's answer; ValueError for anything else."""
    reply = json.loads(data.decode())
    if not isinstance(reply, dict):
        raise ValueError("the reply is not a JSON object")
    rc, out, err = reply.get("rc"), reply.get("out", ""), reply.get("err", "")
    if type(rc) is not int or not 0 <= rc <= 255:
        raise ValueError(f"the reply's rc is {rc!r:.40}, not an exit code 0 to 255")
    if not isinstance(out, str) or not isinstance(err, str):
        raise ValueError("the reply's out and err are not strings")
    return rc, out, err


def connect(path: str, timeout: float = CONNECT_TIMEOUT_S) -> socket.socket | None:
    """A connection to the helper, or None when it is absent, refuses or is too slow."""
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        sock.settimeout(timeout)
        sock.connect(path)
    except OSError:  # no socket, refused, busy, timed out, not allowed: run here
        sock.close()
        return None
    return sock


def exchange(sock: socket.socket, request: bytes) -> tuple[int, str, str]:
    """Send one request, wait for its answer. No timeout: the action runs now, and
    Pacemaker's operation timeout bounds it (a shorter one here would fail actions
    that are merely slow). OSError or ValueError when the connection breaks."""
    with sock:
        sock.settimeout(None)
        sock.sendall(request)
        sock.shutdown(socket.SHUT_WR)
        chunks: list[bytes] = []
        size = 0
        while chunk := sock.recv(65536):
            size += len(chunk)
            if size > MAX_REPLY:
                raise ValueError(f"the reply is larger than {MAX_REPLY} bytes")
            chunks.append(chunk)
    if not chunks:
        raise ValueError("the helper closed the connection without an answer")
    return decode_reply(b"".join(chunks))


def main(agent: str, argv: list[str] | None = None, environ: Mapping[str, str] | None = None,
         path: str = SOCKET_PATH, out: TextIO | None = None, err: TextIO | None = None) -> int:
    """Run one action through the helper when it answers, else in this process."""
    argv = sys.argv if argv is None else argv
    environ = os.environ if environ is None else environ
    out = sys.stdout if out is None else out
    err = sys.stderr if err is None else err
    request = encode_request(agent, argv, environ)
    sock = connect(path) if request is not None else None
    if request is None or sock is None:
        return in_process(agent, argv)
    try:
        rc, text, message = exchange(sock, request)
    except (OSError, ValueError) as exc:
        print(f"{agent} {argv[1]}: the agent helper ({path}) broke off: {exc}; the action "
              "may or may not have run, so it is not run again here", file=err)
        return RC_GENERIC
    out.write(text)
    err.write(message)
    return rc


def in_process(agent: str, argv: list[str]) -> int:
    """The action in this process, as before the helper: slower, but needs nothing."""
    if agent not in AGENTS:
        print(f"agent {agent[:40]!r}: unknown; allowed {', '.join(AGENTS)}", file=sys.stderr)
        return RC_ARGS
    module = __import__(f"iscsiha.agents.{agent}", fromlist=["main"])
    rc: int = module.main(argv)
    return rc
