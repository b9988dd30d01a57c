"""The join token, the join channel's framing, and TLS-PSK itself where Python has it."""

from __future__ import annotations

import contextlib
import io
import shutil
import socket
import ssl
import subprocess
import threading
from ipaddress import ip_address
from pathlib import Path

import pytest

from iscsiha.cli.main import main
from iscsiha.commands import join_exchange
from iscsiha.commands.join_token import PREFIX, JoinToken, decode, encode
from iscsiha.errors import IscsihaError
from iscsiha.executors.join_channel import (
    MAX_MESSAGE,
    Channel,
    ChannelError,
    HandshakeFailed,
    Stream,
    TlsPsk,
)
from iscsiha.views import format_reports

SECRET = bytes(range(16))
TOKEN = JoinToken(ip_address("10.10.0.11"), 5407, SECRET)


def refused(text: str) -> IscsihaError:
    with pytest.raises(IscsihaError) as caught:
        decode(text)
    return caught.value


# -- the token ------------------------------------------------------------------------------

def test_a_token_round_trips_for_ipv4_and_ipv6() -> None:
    text = encode(TOKEN)
    assert text.startswith(PREFIX) and len(text) == 53
    assert decode(text) == TOKEN
    six = JoinToken(ip_address("fd00:10::11"), 65535, SECRET)
    assert decode(encode(six)) == six


def test_case_spaces_and_dashes_do_not_matter() -> None:
    text = encode(TOKEN)
    assert decode(f"  {text.lower()}\n") == TOKEN
    assert decode(PREFIX + text[len(PREFIX):].replace("-", " ")) == TOKEN
    assert decode(PREFIX + text[len(PREFIX):].replace("-", "")) == TOKEN


@pytest.mark.parametrize(("text", "code", "message"), [
    ("", "token-missing", "is empty"),
    ("   ", "token-missing", "is empty"),
    ("hello", "token-format", "does not start with ISJ1-"),
    ("ISJ2-AAAAAA", "token-version", "is a version 2 token; this iscsiha reads version 1"),
    ("ISJ1-ABC0DE-F1", "token-characters",
     "has '0' at character 9, '1' at character 14; a token has only letters A-Z"),
    ("ISJ1-ABCDEF", "token-length", "has 6 letters and digits after ISJ1-; a token has 42"),
])
def test_malformed_tokens_say_what_is_wrong(text: str, code: str, message: str) -> None:
    error = refused(text)
    assert [r.code for r in error.reports] == [code]
    assert message in error.reports[0].message
    assert error.reports[0].field == "token"


def test_a_mistyped_character_fails_the_checksum() -> None:
    text = encode(TOKEN)
    i = len(PREFIX) + 3
    typo = text[:i] + ("A" if text[i] != "A" else "B") + text[i + 1:]
    error = refused(typo)
    assert [r.code for r in error.reports] == ["token-checksum"]
    # A dropped character is a length problem, not a checksum one.
    assert [r.code for r in refused(text[:-1]).reports] == ["token-length"]


def test_a_token_naming_no_usable_place_is_refused() -> None:
    error = refused(encode(JoinToken(ip_address("0.0.0.0"), 5407, SECRET)))
    assert [r.code for r in error.reports] == ["token-content"]
    error = refused(encode(JoinToken(ip_address("10.10.0.11"), 0, SECRET)))
    assert [r.code for r in error.reports] == ["token-content"]


def test_reports_never_show_the_token() -> None:
    text = encode(TOKEN)
    shown = format_reports(refused(text[:-1] + "0").reports)
    assert text[len(PREFIX):len(PREFIX) + 20] not in shown
    assert "<secret, 53 characters>" in shown


def test_the_cli_refuses_a_malformed_token(capsys: pytest.CaptureFixture[str],
                                          monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr("sys.stdin", io.StringIO("ISJ1-NOPE\n"))
    assert main(["cluster", "join", "-"]) == 1
    err = capsys.readouterr().err
    assert "token-length" in err and "nothing was applied" in err


def test_the_cli_refuses_a_token_in_argv_without_showing_it(
        capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr("sys.stdin", io.StringIO(""))
    assert main(["cluster", "join", "ISJ1-BIFAAC-YVD5ZI"]) == 1
    err = capsys.readouterr().err
    assert "secret-on-command-line" in err and "iscsiha cluster join -" in err
    assert "BIFAAC" not in err and "nothing was applied" in err


def test_the_cli_says_when_stdin_ends_before_the_token(
        capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr("sys.stdin", io.StringIO(""))
    assert main(["cluster", "join"]) == 1
    assert "secret-missing" in capsys.readouterr().err


# -- the channel ----------------------------------------------------------------------------

@pytest.fixture
def pair() -> tuple[Channel, Channel]:
    left, right = socket.socketpair()
    return Channel(left, "left"), Channel(right, "right")


def test_messages_cross_whole(pair: tuple[Channel, Channel]) -> None:
    left, right = pair
    big = {"type": "offer", "data": "x" * 200_000}
    sender = threading.Thread(target=left.send, args=(big,))
    sender.start()
    assert right.receive(5.0) == big
    sender.join(5.0)


def test_a_read_is_bounded_in_time_and_size(pair: tuple[Channel, Channel]) -> None:
    left, right = pair
    with pytest.raises(ChannelError, match="sent nothing for 0 s"):
        right.receive(0.2)
    left.stream.sendall((MAX_MESSAGE + 1).to_bytes(4, "big"))
    with pytest.raises(ChannelError, match="a message of 1048577 bytes"):
        right.receive(1.0)


def test_a_closed_or_garbled_connection_is_an_error(pair: tuple[Channel, Channel]) -> None:
    left, right = pair
    left.stream.sendall((5).to_bytes(4, "big") + b"[1,2]")
    with pytest.raises(ChannelError, match="list, not an object"):
        right.receive(1.0)
    left.close()
    with pytest.raises(ChannelError, match="closed the connection"):
        right.receive(1.0)


def test_the_offer_checks_its_fields(pair: tuple[Channel, Channel]) -> None:
    left, right = pair
    left.send({"type": "offer", "version": "1", "desired": "", "corosync_conf": "",
               "ssh_public": "", "host_key": "", "authkey": "not base64!", "ssh_key": ""})
    with pytest.raises(IscsihaError) as caught:
        join_exchange.Offer.read(right.receive(1.0), "first box")
    assert [(r.code, r.field) for r in caught.value.reports] == [
        ("bad-message", "first box authkey")]


def test_reports_cross_with_secrets_redacted(pair: tuple[Channel, Channel]) -> None:
    left, right = pair
    from iscsiha.errors import Report, Secret
    join_exchange.refuse(left, [Report("bad-secret", "bmc_password", Secret("hunter2-hunter"),
                                       "1 to 20 characters")])
    message = right.receive(1.0)
    assert message["reports"][0]["value"] == "<secret, 14 characters>"


# -- TLS 1.3 with the token's key (Python 3.13 and later) -----------------------------------

needs_psk = pytest.mark.skipif(TlsPsk().unavailable() is not None,
                               reason=str(TlsPsk().unavailable()))


def handshake(server_key: bytes, client_key: bytes) -> tuple[object, object]:
    """Both ends of one TLS-PSK handshake over loopback: a Stream or the exception."""
    listener = socket.create_server(("127.0.0.1", 0))
    results: dict[str, object] = {}

    def serve() -> None:
        sock, _ = listener.accept()
        sock.settimeout(10.0)
        try:
            stream: Stream = TlsPsk().server(sock, server_key)
            Channel(stream, "client").send({"type": "hello"})
            results["server"] = stream
        except HandshakeFailed as exc:
            results["server"] = exc

    thread = threading.Thread(target=serve)
    thread.start()
    sock = socket.create_connection(listener.getsockname(), timeout=10.0)
    try:
        stream = TlsPsk().client(sock, client_key)
        results["client"] = Channel(stream, "server").receive(10.0)
    except HandshakeFailed as exc:
        results["client"] = exc
    thread.join(15.0)
    listener.close()
    return results["server"], results["client"]


@needs_psk
def test_tls_psk_connects_with_the_same_key() -> None:
    server, client = handshake(SECRET, SECRET)
    assert client == {"type": "hello"}
    assert not isinstance(server, Exception)


@needs_psk
def test_tls_psk_refuses_another_key_on_both_sides() -> None:
    server, client = handshake(SECRET, bytes(16))
    assert isinstance(server, HandshakeFailed) and isinstance(client, HandshakeFailed)
    assert "binder does not verify" in str(server)


@needs_psk
@pytest.mark.skipif(shutil.which("openssl") is None, reason="needs the openssl command")
def test_tls_psk_refuses_a_server_that_shows_a_certificate_instead(tmp_path: Path) -> None:
    """With certificate checks off, only this check stops a server that skips the key."""
    subprocess.run(["openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt",
                    "ec_paramgen_curve:P-256", "-nodes", "-keyout", str(tmp_path / "key.pem"),
                    "-out", str(tmp_path / "cert.pem"), "-days", "1", "-subj", "/CN=mitm"],
                   check=True, capture_output=True, timeout=60)
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(tmp_path / "cert.pem", tmp_path / "key.pem")
    listener = socket.create_server(("127.0.0.1", 0))

    def serve() -> None:
        sock, _ = listener.accept()
        with contextlib.suppress(OSError), context.wrap_socket(sock, server_side=True) as tls:
            tls.recv(1)

    thread = threading.Thread(target=serve)
    thread.start()
    sock = socket.create_connection(listener.getsockname(), timeout=10.0)
    with pytest.raises(HandshakeFailed, match="presented a certificate"):
        TlsPsk().client(sock, SECRET)
    thread.join(15.0)
    listener.close()


def test_without_tls_psk_python_says_so() -> None:
    reason = TlsPsk().unavailable()
    if reason is None:
        pytest.skip("this Python has TLS-PSK")
    assert "Python 3.13" in reason
