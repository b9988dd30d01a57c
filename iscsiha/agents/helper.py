"""The agent helper: one long-lived process per box that runs the OCF agents' actions.

A cold ``ocf/target`` pays for Python, our modules, pyroute2 and rtslib on every
action (1-1.5 s on a one-CPU box, more beside DRBD's promote), on the failover's
critical path. This process imports them once and serves the thin entry points
(iscsiha.agents.thin) on a Unix socket: one JSON request per connection, each in its
own thread with its own agent object and executors (which open their handles per use
and take the per-box file locks, as separate processes did).

Only root may ask (SO_PEERCRED). A request that is not what the protocol allows gets
rc 2 (OCF_ERR_ARGS) and a message; nothing a client sends stops the helper. Pacemaker
never depends on it: a thin entry point that cannot connect runs the action itself.
"""

from __future__ import annotations

import argparse
import io
import json
import logging
import os
import signal
import socket
import stat
import struct
import sys
import threading
import time
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager, suppress
from dataclasses import dataclass
from types import FrameType
from typing import TextIO

from iscsiha.agents import address, discovery, target
from iscsiha.agents.thin import (
    AGENTS,
    MAX_REQUEST,
    SOCKET_PATH,
    action_ok,
    env_key_ok,
    env_value_ok,
)

log = logging.getLogger("iscsiha.agent-helper")

Dispatch = Callable[[list[str], Mapping[str, str], TextIO, TextIO], int]
DISPATCH: dict[str, Dispatch] = {
    "address": address.dispatch, "discovery": discovery.dispatch, "target": target.dispatch,
}
READ_TIMEOUT_S = 10.0  # for the whole request: a thin client sends it at once
MAX_WORKERS = 64  # Pacemaker runs a handful of actions at once per box
RC_GENERIC, RC_ARGS, RC_PERM = 1, 2, 4
_UCRED = struct.Struct("3i")  # struct ucred: pid, uid, gid


class RequestError(Exception):
    """A request the protocol does not allow; the message says what and why."""


@dataclass(frozen=True)
class Request:
    agent: str
    action: str
    env: dict[str, str]


def parse_request(data: bytes) -> Request:
    """The request in ``data``, every field checked; RequestError says what is wrong."""
    if len(data) > MAX_REQUEST:
        raise RequestError(f"request: {len(data)} bytes or more; allowed {MAX_REQUEST}")
    try:
        body = json.loads(data.decode("utf-8"))
    except (UnicodeDecodeError, ValueError) as exc:  # JSONDecodeError is a ValueError
        raise RequestError(f"request: not UTF-8 JSON ({str(exc)[:80]})") from exc
    if not isinstance(body, dict):
        raise RequestError(f"request: a JSON {type(body).__name__}; allowed an object "
                           "with agent, argv1 and env")
    extra = sorted(set(body) - {"agent", "argv1", "env"})
    if extra:
        raise RequestError(f"request: unknown field {extra[0][:40]!r}; allowed agent, "
                           "argv1, env")
    agent, action, env = body.get("agent"), body.get("argv1"), body.get("env", {})
    if not isinstance(agent, str) or agent not in AGENTS:
        raise RequestError(f"agent {_show(agent)}: allowed {', '.join(AGENTS)}")
    if not isinstance(action, str) or not action_ok(action):
        raise RequestError(f"argv1 {_show(action)}: allowed an action name (lower-case "
                           "letters, digits, dashes; at most 32)")
    if not isinstance(env, dict):
        raise RequestError(f"env: a JSON {type(env).__name__}; allowed an object")
    for key, value in env.items():
        if not env_key_ok(key):
            raise RequestError(f"env key {_show(key)}: allowed OCF_ and 1 to 64 ASCII "
                               "letters, digits or underscores")
        if not isinstance(value, str) or not env_value_ok(value):
            raise RequestError(f"env {key}: {_show(value)}; allowed a string of at most "
                               "65536 characters without NUL")
    return Request(agent, action, env)


def _show(value: object) -> str:
    text = repr(value)
    return text if len(text) <= 60 else f"{text[:50]}... ({len(text)} characters)"


class _PerThread(io.TextIOBase):
    """sys.stdout or sys.stderr as each request thread sees it: its own buffer while it
    runs an action, so what an executor prints (sys.stderr, not the ``err`` passed to
    ``run``) reaches that action's caller and Pacemaker's log, not the helper's."""

    def __init__(self, fallback: TextIO) -> None:
        super().__init__()
        self._fallback = fallback
        self._local = threading.local()

    def _target(self) -> TextIO:
        stream: TextIO | None = getattr(self._local, "stream", None)
        return self._fallback if stream is None else stream

    def write(self, text: str) -> int:
        return self._target().write(text)

    def flush(self) -> None:
        self._target().flush()

    @contextmanager
    def capture(self, stream: TextIO) -> Iterator[None]:
        self._local.stream = stream
        try:
            yield
        finally:
            self._local.stream = None


def run_request(request: Request, dispatch: Mapping[str, Dispatch] = DISPATCH) -> dict[str, object]:
    """Run one action as its entry point would, with its own output captured."""
    out, err = io.StringIO(), io.StringIO()
    stdout, stderr = sys.stdout, sys.stderr
    with _capture(stdout, out), _capture(stderr, err):
        rc = dispatch[request.agent]([request.agent, request.action], request.env, out, err)
    return {"rc": int(rc), "out": out.getvalue(), "err": err.getvalue()}


@contextmanager
def _capture(stream: TextIO, into: TextIO) -> Iterator[None]:
    if isinstance(stream, _PerThread):
        with stream.capture(into):
            yield
    else:  # not installed (tests, a library caller): executors print where they print
        yield


class Helper:
    """The listening socket and the threads that serve it."""

    def __init__(self, path: str = SOCKET_PATH, *, dispatch: Mapping[str, Dispatch] = DISPATCH,
                 allowed_uids: frozenset[int] = frozenset({0}),
                 read_timeout: float = READ_TIMEOUT_S) -> None:
        self.path = path
        self._dispatch = dispatch
        self._allowed = allowed_uids
        self._read_timeout = read_timeout
        self._stop = threading.Event()
        self._workers: set[threading.Thread] = set()
        self._lock = threading.Lock()
        self._listener: socket.socket | None = None
        self._inode: int | None = None

    def bind(self) -> None:
        """Listen on ``path``: its directory made 0700 if new, the socket 0600."""
        directory = os.path.dirname(self.path) or "."
        os.makedirs(directory, mode=0o700, exist_ok=True)
        _check_directory(directory)
        if _answers(self.path):
            raise RuntimeError(f"{self.path}: another agent helper answers there already")
        with suppress(FileNotFoundError):
            os.unlink(self.path)  # a dead helper's socket
        listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        old_umask = os.umask(0o177)  # no moment where the socket is open to others
        try:
            listener.bind(self.path)
        finally:
            os.umask(old_umask)
        os.chmod(self.path, 0o600)
        listener.listen(64)
        listener.settimeout(0.2)  # how soon serve_forever notices stop()
        self._listener = listener
        self._inode = os.stat(self.path).st_ino

    def serve_forever(self) -> None:
        assert self._listener is not None, "bind() first"
        while not self._stop.is_set():
            try:
                conn, _ = self._listener.accept()
            except TimeoutError:
                continue
            except OSError as exc:  # EMFILE and friends: wait, never die
                log.warning("agent helper: accept failed: %s", exc)
                time.sleep(0.2)
                continue
            self._start_worker(conn)
        self._close()

    def stop(self) -> None:
        self._stop.set()

    def _start_worker(self, conn: socket.socket) -> None:
        with self._lock:
            self._workers = {t for t in self._workers if t.is_alive()}
            busy = len(self._workers) >= MAX_WORKERS
            if not busy:
                # Not a daemon thread: a stop waits for actions under way to answer.
                worker = threading.Thread(target=self._serve, args=(conn,), daemon=False,
                                          name="agent-request")
                self._workers.add(worker)
                worker.start()
        if busy:
            self._reply_safely(conn, {"rc": RC_GENERIC, "out": "", "err": (
                f"agent helper: {MAX_WORKERS} actions under way; try again")})

    def _serve(self, conn: socket.socket) -> None:
        started = time.monotonic()
        try:
            pid, uid = _peer(conn)
            if uid not in self._allowed:
                log.warning("agent helper: refused pid %d: uid %d may not ask", pid, uid)
                self._reply_safely(conn, {"rc": RC_PERM, "out": "", "err": (
                    f"agent helper: uid {uid} may not ask; allowed uid 0 (root)\n")})
                _drain(conn)
                return
            try:
                request = parse_request(self._read(conn))
            except RequestError as exc:
                log.warning("agent helper: pid %d: %s", pid, exc)
                self._reply_safely(conn, {"rc": RC_ARGS, "out": "",
                                          "err": f"agent helper: {exc}\n"})
                _drain(conn)
                return
            reply = run_request(request, self._dispatch)
            log.debug("agent helper: pid %d: %s %s: rc %s in %.3f s", pid, request.agent,
                      request.action, reply["rc"], time.monotonic() - started)
            self._reply_safely(conn, reply)
        except Exception:  # a bug of ours: logged, answered, and the helper goes on
            log.exception("agent helper: request failed")
            self._reply_safely(conn, {"rc": RC_GENERIC, "out": "",
                                      "err": "agent helper: internal error (see its journal)\n"})
        finally:
            conn.close()

    def _read(self, conn: socket.socket) -> bytes:
        """The request up to EOF, within the read timeout and the size limit."""
        deadline = time.monotonic() + self._read_timeout
        chunks: list[bytes] = []
        size = 0
        while True:
            left = deadline - time.monotonic()
            if left <= 0:
                raise RequestError(f"request: not complete within {self._read_timeout:g} s")
            conn.settimeout(left)
            try:
                chunk = conn.recv(65536)
            except TimeoutError:
                continue  # the deadline check above answers
            if not chunk:
                return b"".join(chunks)
            size += len(chunk)
            if size > MAX_REQUEST:
                raise RequestError(f"request: more than {MAX_REQUEST} bytes")
            chunks.append(chunk)

    @staticmethod
    def _reply_safely(conn: socket.socket, reply: Mapping[str, object]) -> None:
        try:
            conn.settimeout(5.0)  # a client that reads nothing does not hold a thread
            conn.sendall(json.dumps(reply).encode())
        except OSError as exc:  # the client went away: nothing more to do for it
            log.debug("agent helper: reply not delivered: %s", exc)

    def _close(self) -> None:
        """Stop listening (removing our socket, not a successor's) and let actions under
        way finish."""
        if self._listener is not None:
            self._listener.close()
            self._listener = None
            try:
                if os.stat(self.path).st_ino == self._inode:
                    os.unlink(self.path)
            except FileNotFoundError:
                pass
        with self._lock:
            workers = list(self._workers)
        for worker in workers:
            worker.join()


def _peer(conn: socket.socket) -> tuple[int, int]:
    """The client's pid and uid, as the kernel recorded them at connect."""
    pid, uid, _gid = _UCRED.unpack(
        conn.getsockopt(socket.SOL_SOCKET, socket.SO_PEERCRED, _UCRED.size))
    return pid, uid


def _drain(conn: socket.socket) -> None:
    """Read what the client still sends (a little, briefly) before closing: closing a
    socket with unread data resets it, and the client would lose the error reply."""
    size = 0
    try:
        conn.settimeout(0.5)
        while size <= 4 * MAX_REQUEST and (chunk := conn.recv(65536)):
            size += len(chunk)
    except OSError:
        pass  # timed out or reset: the reply was sent, nothing more to do


def _check_directory(directory: str) -> None:
    """Refuse a directory someone else could swap the socket in."""
    st = os.stat(directory)
    if st.st_uid != os.geteuid() or st.st_mode & (stat.S_IWGRP | stat.S_IWOTH):
        raise RuntimeError(f"{directory}: owned by uid {st.st_uid} with mode "
                           f"{stat.S_IMODE(st.st_mode):o}; allowed: owned by uid "
                           f"{os.geteuid()}, writable by no one else")


def _answers(path: str) -> bool:
    probe = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        probe.settimeout(1.0)
        probe.connect(path)
    except OSError:
        return False
    finally:
        probe.close()
    return True


def preload() -> None:
    """Import what the actions need now, not on the failover's critical path."""
    for name in ("pyroute2", "pyroute2.netlink.exceptions", "rtslib_fb"):
        try:
            __import__(name)
        except Exception as exc:  # the action imports it again and reports the failure
            log.warning("agent helper: %s not loaded in advance: %s", name, exc)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="iscsiha-agent-helper",
        description="Serve the iscsiha OCF agents' actions with their libraries loaded.")
    parser.add_argument("--socket", default=SOCKET_PATH, help=f"default {SOCKET_PATH}")
    parser.add_argument("--debug", action="store_true", help="log one line per request")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.DEBUG if args.debug else logging.INFO,
                        format="%(message)s", stream=sys.stderr)
    if os.geteuid() != 0:
        print("iscsiha-agent-helper: runs as root (it changes LIO and addresses)",
              file=sys.stderr)
        return 1
    preload()
    # Installed before any thread starts; the handlers keep the real streams.
    real_stdout, real_stderr = sys.stdout, sys.stderr
    sys.stdout, sys.stderr = _PerThread(real_stdout), _PerThread(real_stderr)
    for handler in logging.getLogger().handlers:
        if isinstance(handler, logging.StreamHandler):
            handler.setStream(real_stderr)
    helper = Helper(args.socket)
    try:
        helper.bind()
    except (OSError, RuntimeError) as exc:
        print(f"iscsiha-agent-helper: {exc}", file=real_stderr)
        return 1

    def on_signal(signum: int, _frame: FrameType | None) -> None:
        helper.stop()

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    log.info("agent helper: serving %s", helper.path)
    helper.serve_forever()
    return 0


if __name__ == "__main__":
    sys.exit(main())
