"""The join exchange, both ends, over an authenticated channel (executors.join_channel).

1. joiner: hello (its host name, SSH host key and iscsiha version);
2. first box: the offer (the cluster's sections of the desired state, its
   corosync.conf, authkey, cluster SSH key, its own SSH host key, the qdevice
   certificate bundle);
3. joiner: checks everything, then either "refused" (its checks failed) or
   "failed" (a write or a start failed and was undone) or "joined";
4. first box, on "joined" only: records the joiner's host key, uses up the
   token and answers "done"; if that fails, "error", and the joiner undoes.

The first box changes nothing before step 4, and a connection that fails the
handshake or ends before "joined" leaves its token valid for the next try.
"""

from __future__ import annotations

import base64
import binascii
import contextlib
import socket
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

from iscsiha.errors import IscsihaError, Report
from iscsiha.executors import join_channel
from iscsiha.executors.join_channel import Channel, ChannelError, HandshakeFailed, Security
from iscsiha.model import names
from iscsiha.protocol import codec
from iscsiha.protocol.codec import printable

HANDSHAKE_TIMEOUT = 10.0  # a connection that does not prove the key in time is dropped
RESULT_TIMEOUT = 900.0  # the joiner writes files and starts three services meanwhile
FAILURES_PER_SOURCE = 5  # failed connections from one address before it is ignored
Log = Callable[[str], None]


@dataclass(frozen=True)
class Hello:
    hostname: str
    host_key: str  # "ssh-ed25519 BASE64 [comment]"
    version: str

    def message(self) -> dict[str, Any]:
        return {"type": "hello", "hostname": self.hostname, "host_key": self.host_key,
                "version": self.version}

    @classmethod
    def read(cls, message: dict[str, Any], peer: str) -> Hello:
        _expect(message, "hello", peer)
        hello = cls(_text(message, "hostname", peer), _text(message, "host_key", peer),
                    _text(message, "version", peer))
        if names.NODE_NAME.fullmatch(hello.hostname) is None:
            raise IscsihaError.single("bad-message", f"{peer} hostname", hello.hostname,
                                      names.NODE_NAME_ALLOWED)
        if not (len(hello.version) <= 64 and hello.version.isprintable()):
            raise IscsihaError.single("bad-message", f"{peer} version", hello.version,
                                      "a release number")
        return hello


@dataclass(frozen=True)
class Offer:
    version: str
    desired: str  # TOML: [cluster], [[networks]], [[nodes]] (with the BMC passwords)
    corosync_conf: str
    authkey: bytes = field(repr=False)
    ssh_key: bytes = field(repr=False)  # the cluster's private key
    ssh_public: str
    host_key: str  # the first box's SSH host key
    qdevice_ca: bytes | None = None
    qdevice_p12: bytes | None = field(default=None, repr=False)
    replacing: bool = False  # the joiner replaces a dead box: its volumes are made anew

    def message(self) -> dict[str, Any]:
        return {"type": "offer", "version": self.version, "desired": self.desired,
                "corosync_conf": self.corosync_conf, "authkey": _b64(self.authkey),
                "ssh_key": _b64(self.ssh_key), "ssh_public": self.ssh_public,
                "host_key": self.host_key, "qdevice_ca": _b64(self.qdevice_ca),
                "qdevice_p12": _b64(self.qdevice_p12), "replacing": self.replacing}

    @classmethod
    def read(cls, message: dict[str, Any], peer: str) -> Offer:
        _expect(message, "offer", peer)
        text = {key: _text(message, key, peer) for key in
                ("version", "desired", "corosync_conf", "ssh_public", "host_key")}
        authkey = _bytes(message, "authkey", peer)
        ssh_key = _bytes(message, "ssh_key", peer)
        assert authkey is not None and ssh_key is not None  # _bytes checks required keys
        replacing = message.get("replacing", False)
        if not isinstance(replacing, bool):
            raise IscsihaError.single("bad-message", f"{peer} replacing",
                                      type(replacing).__name__, "true or false")
        return cls(authkey=authkey, ssh_key=ssh_key, replacing=replacing,
                   qdevice_ca=_bytes(message, "qdevice_ca", peer, required=False),
                   qdevice_p12=_bytes(message, "qdevice_p12", peer, required=False), **text)


# -- the first box ----------------------------------------------------------------------

def serve(listener: socket.socket, security: Security, psk: bytes, offer: Offer,
          check: Callable[[Hello], list[Report]], commit: Callable[[Hello], None],
          deadline: float, log: Log, clock: Callable[[], float] = time.monotonic) -> bool:
    """Answer joiners one at a time until one has joined (True) or ``deadline`` (False).

    ``check`` looks at a joiner's hello before anything secret is sent; a source whose
    connections failed FAILURES_PER_SOURCE times is not answered again.
    """
    failures: dict[str, int] = {}
    while (left := deadline - clock()) > 0:
        accepted = join_channel.accept(listener, min(left, 1.0))
        if accepted is None:
            continue
        sock, peer = accepted
        source = peer.rsplit(":", 1)[0]
        try:
            if failures.get(source, 0) >= FAILURES_PER_SOURCE:
                continue  # closed unanswered: guessing the token from there has to stop
            if _serve_one(sock, peer, security, psk, offer, check, commit, log):
                return True
            failures[source] = failures.get(source, 0) + 1
            if failures[source] == FAILURES_PER_SOURCE:
                log(f"{source}: {FAILURES_PER_SOURCE} failed connections; no more are "
                    "answered from there until this token expires")
        finally:
            sock.close()
    log("the join token expired unused")
    return False


def _serve_one(sock: socket.socket, peer: str, security: Security, psk: bytes, offer: Offer,
               check: Callable[[Hello], list[Report]], commit: Callable[[Hello], None],
               log: Log) -> bool:
    sock.settimeout(HANDSHAKE_TIMEOUT)
    try:
        stream = security.server(sock, psk)
    except HandshakeFailed as exc:
        log(f"{peer}: a connection without this token's key, closed ({exc}); "
            "the token stays valid")
        return False
    channel = Channel(stream, peer)
    try:
        hello = Hello.read(channel.receive(HANDSHAKE_TIMEOUT), peer)
        log(f"{peer}: {hello.hostname} (iscsiha {hello.version}) asks to join")
        problems = check(hello)
        if problems:
            channel.send({"type": "error", "reports": codec.report_list(problems)})
            log(f"{peer}: refused before anything secret was sent: "
                + "; ".join(f"{r.field}: {r.message or r.code}" for r in problems)
                + "; the token stays valid")
            return False
        channel.send(offer.message())
        answer = channel.receive(RESULT_TIMEOUT)
        if answer.get("type") != "joined":
            reports = _reports(answer.get("reports"))
            log(f"{peer}: {hello.hostname} did not join ({codec.shown(answer.get('type'))}): "
                + "; ".join(f"{r.field}: {r.message or r.code}" for r in reports)
                + "; the token stays valid")
            return False
        try:
            commit(hello)
        except IscsihaError as exc:
            channel.send({"type": "error", "reports": codec.report_list(exc.reports)})
            log(f"{peer}: recording {hello.hostname} failed: {exc}; the token stays valid")
            return False
        channel.send({"type": "done"})
        log(f"{peer}: {hello.hostname} joined; the token is used up")
        return True
    except (ChannelError, IscsihaError) as exc:
        log(f"{peer}: {exc}; the token stays valid")
        return False
    finally:
        channel.close()


# -- the joining box --------------------------------------------------------------------

def request(channel: Channel, hello: Hello) -> Offer:
    """Say hello; the first box's offer."""
    try:
        channel.send(hello.message())
        return Offer.read(channel.receive(HANDSHAKE_TIMEOUT * 3), channel.peer)
    except ChannelError as exc:
        raise _broken(channel, exc, "before sending what this box needs") from exc


def refuse(channel: Channel, reports: Iterable[Report]) -> None:
    """This box's checks failed: tell the first box, which keeps its token valid."""
    _tell(channel, {"type": "refused", "reports": codec.report_list(reports)})


def fail(channel: Channel, reports: Iterable[Report]) -> None:
    """Setting this box up failed and was undone."""
    _tell(channel, {"type": "failed", "reports": codec.report_list(reports)})


def finish(channel: Channel) -> None:
    """This box is set up: the first box records it and uses up the token."""
    try:
        channel.send({"type": "joined"})
        answer = channel.receive(RESULT_TIMEOUT)
    except ChannelError as exc:
        raise _broken(channel, exc, "before confirming the join") from exc
    if answer.get("type") == "done":
        return
    reports = _reports(answer.get("reports"))
    raise IscsihaError(reports or [Report("bad-message", "first box", answer.get("type"),
                                          "done or error", "answered something else")])


def _tell(channel: Channel, message: dict[str, Any]) -> None:
    # If this fails the first box learns it from the closed connection just as well.
    with contextlib.suppress(ChannelError):
        channel.send(message)


def _broken(channel: Channel, exc: ChannelError, when: str) -> IscsihaError:
    return IscsihaError.single("join-interrupted", "first box", channel.peer,
                               "a connection that lasts the whole join",
                               f"{exc} {when}; nothing was changed on either box")


# -- message fields ---------------------------------------------------------------------

def _expect(message: dict[str, Any], kind: str, peer: str) -> None:
    if message.get("type") == kind:
        return
    reports = _reports(message.get("reports"))
    if message.get("type") == "error" and reports:
        raise IscsihaError(reports)
    raise IscsihaError.single("bad-message", peer, message.get("type"), kind,
                              "sent something else: do both boxes run the same iscsiha?")


def _text(message: dict[str, Any], key: str, peer: str) -> str:
    value = message.get(key)
    if not isinstance(value, str) or not printable(value, "\n\t"):
        raise IscsihaError.single("bad-message", f"{peer} {key}", type(value).__name__,
                                  "printable text", "is missing, not text or has control "
                                  "characters")
    return value


def _bytes(message: dict[str, Any], key: str, peer: str,
           required: bool = True) -> bytes | None:
    value = message.get(key)
    if value is None and not required:
        return None
    try:
        if isinstance(value, str):
            return base64.b64decode(value, validate=True)
    except binascii.Error:
        pass
    raise IscsihaError.single("bad-message", f"{peer} {key}", type(value).__name__,
                              "base64 text", "is missing or not base64")


def _b64(data: bytes | None) -> str | None:
    return None if data is None else base64.b64encode(data).decode()


def _reports(value: object) -> list[Report]:
    """The reports a message carries (none if it carries something else)."""
    try:
        return codec.reports_of({"reports": value})
    except IscsihaError:
        return []
