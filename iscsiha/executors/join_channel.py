"""The join connection: TCP, then TLS 1.3 keyed by the join token's secret.

The only module that opens sockets or builds TLS contexts. Both sides prove they
hold the token's secret through TLS 1.3's external pre-shared key (RFC 8446
2.2, with an ephemeral key exchange, so a token read later does not open a
recorded exchange); no certificate is involved. Messages are JSON objects, each
preceded by its length, with a size limit and a timeout on every read.
"""

from __future__ import annotations

import contextlib
import json
import socket
import ssl
import struct
from collections.abc import Mapping
from typing import Any, Protocol

from iscsiha.errors import IscsihaError
from iscsiha.model.types import IPAddress, host_port

IDENTITY = "iscsiha-join-1"  # the PSK identity: names the protocol, not a secret
MAX_MESSAGE = 1 << 20  # the largest offer is a few KiB (keys and certificates)
_HEADER = struct.Struct("!I")


class HandshakeFailed(Exception):
    """The other side does not hold the token's secret (or does not speak TLS-PSK)."""


class ChannelError(Exception):
    """The connection broke, timed out, or carried something that is not a message."""


class Stream(Protocol):
    def sendall(self, data: bytes, /) -> None: ...

    def recv(self, size: int, /) -> bytes: ...

    def settimeout(self, value: float | None, /) -> None: ...

    def close(self) -> None: ...


class Security(Protocol):
    """How a connected socket becomes an authenticated, encrypted stream."""

    def unavailable(self) -> str | None:
        """Why this cannot work here, or None."""

    def server(self, sock: socket.socket, psk: bytes) -> Stream: ...

    def client(self, sock: socket.socket, psk: bytes) -> Stream: ...


class TlsPsk:
    """TLS 1.3 authenticated both ways by the pre-shared key alone.

    Needs Python 3.13's SSLContext.set_psk_*_callback (the appliance's Debian
    trixie has 3.13); older Pythons cannot join or serve a join.
    """

    def unavailable(self) -> str | None:
        if not (getattr(ssl, "HAS_PSK", False) and ssl.HAS_TLSv1_3
                and hasattr(ssl.SSLContext, "set_psk_client_callback")):
            return (f"this Python's ssl module ({ssl.OPENSSL_VERSION}) has no TLS 1.3 "
                    "pre-shared keys; they need Python 3.13 or later")
        return None

    def _context(self, protocol: int) -> ssl.SSLContext:
        reason = self.unavailable()
        if reason is not None:
            raise IscsihaError.single("tls-psk-unavailable", "python", ssl.OPENSSL_VERSION,
                                      "Python 3.13 or later with OpenSSL 1.1.1 or later",
                                      reason)
        context = ssl.SSLContext(protocol)
        context.minimum_version = ssl.TLSVersion.TLSv1_3
        return context

    def server(self, sock: socket.socket, psk: bytes) -> Stream:
        context = self._context(ssl.PROTOCOL_TLS_SERVER)
        # An unknown identity gets an empty key, which makes OpenSSL fall back to a
        # certificate this server does not have: the handshake fails.
        context.set_psk_server_callback(  # type: ignore[attr-defined]  # Python 3.13
            lambda identity: psk if identity == IDENTITY else b"")
        try:
            return context.wrap_socket(sock, server_side=True)
        except (ssl.SSLError, OSError) as exc:
            raise HandshakeFailed(_reason(exc)) from exc

    def client(self, sock: socket.socket, psk: bytes) -> Stream:
        context = self._context(ssl.PROTOCOL_TLS_CLIENT)
        # No certificate is expected, so none is verified: the key proves the server.
        context.check_hostname = False
        context.verify_mode = ssl.CERT_NONE
        context.set_psk_client_callback(  # type: ignore[attr-defined]  # Python 3.13
            lambda hint: (IDENTITY, psk))
        try:
            tls = context.wrap_socket(sock)
        except (ssl.SSLError, OSError) as exc:
            raise HandshakeFailed(_reason(exc)) from exc
        # A server may ignore the offered key and present any certificate instead;
        # with verification off the handshake would succeed. Only a session that
        # used the key (resumed from it, no certificate) proves the server holds it.
        if tls.getpeercert(binary_form=True) is not None or not tls.session_reused:
            tls.close()
            raise HandshakeFailed("the other side presented a certificate instead of "
                                  "proving it holds the token's key")
        return tls


def _reason(exc: Exception) -> str:
    if isinstance(exc, ssl.SSLError) and exc.reason:
        return str(exc.reason).replace("_", " ").lower()
    return str(exc) or type(exc).__name__


class Channel:
    """Length-prefixed JSON messages over an authenticated stream."""

    def __init__(self, stream: Stream, peer: str) -> None:
        self.stream = stream
        self.peer = peer

    def send(self, message: Mapping[str, Any], timeout: float = 30.0) -> None:
        data = json.dumps(message).encode()
        try:
            self.stream.settimeout(timeout)
            self.stream.sendall(_HEADER.pack(len(data)) + data)
        except OSError as exc:
            raise ChannelError(f"sending to {self.peer} failed: {_reason(exc)}") from exc

    def receive(self, timeout: float) -> dict[str, Any]:
        size = _HEADER.unpack(self._exactly(_HEADER.size, timeout))[0]
        if size > MAX_MESSAGE:
            raise ChannelError(f"{self.peer} sent a message of {size} bytes "
                               f"(at most {MAX_MESSAGE})")
        try:
            message = json.loads(self._exactly(size, timeout))
        except ValueError as exc:
            raise ChannelError(f"{self.peer} sent something that is not JSON") from exc
        if not isinstance(message, dict):
            raise ChannelError(f"{self.peer} sent {type(message).__name__}, not an object")
        return message

    def _exactly(self, size: int, timeout: float) -> bytes:
        chunks, got = [], 0
        try:
            self.stream.settimeout(timeout)
            while got < size:
                chunk = self.stream.recv(min(size - got, 65536))
                if not chunk:
                    raise ChannelError(f"{self.peer} closed the connection")
                chunks.append(chunk)
                got += len(chunk)
        except TimeoutError as exc:
            raise ChannelError(f"{self.peer} sent nothing for {timeout:.0f} s") from exc
        except OSError as exc:
            raise ChannelError(f"reading from {self.peer} failed: {_reason(exc)}") from exc
        return b"".join(chunks)

    def close(self) -> None:
        # Closing a broken connection: nothing is left to tell the other side.
        with contextlib.suppress(OSError):
            self.stream.close()


def listen(address: IPAddress, port: int) -> socket.socket:
    """A listening socket on exactly this address (not all of the box's)."""
    family = socket.AF_INET6 if address.version == 6 else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind((str(address), port))
        sock.listen(4)
    except OSError as exc:
        sock.close()
        raise IscsihaError.single(
            "cannot-listen", "join listener", host_port(address, port),
            "an address of this box and a free TCP port", exc.strerror or str(exc)) from exc
    return sock


def accept(listener: socket.socket, timeout: float) -> tuple[socket.socket, str] | None:
    """The next connection within ``timeout`` seconds, with who made it; or None."""
    listener.settimeout(timeout)
    try:
        sock, peer = listener.accept()
    except TimeoutError:
        return None
    return sock, f"{peer[0]}:{peer[1]}"


def connect(address: IPAddress, port: int, timeout: float) -> socket.socket:
    """A TCP connection to the first box; an error names where and why, within ``timeout``."""
    try:
        return socket.create_connection((str(address), port), timeout=timeout)
    except TimeoutError as exc:
        reason = f"no answer within {timeout:.0f} s"
        cause: OSError = exc
    except OSError as exc:
        reason = exc.strerror or str(exc)
        cause = exc
    raise IscsihaError.single(
        "peer-unreachable", "first box", host_port(address, port),
        "the first box's join listener, which waits from `cluster init` until the "
        "token expires",
        f"cannot connect: {reason}; is the token's `cluster init` still waiting, and are "
        "both boxes on this cluster link?") from cause
