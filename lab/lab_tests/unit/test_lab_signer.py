"""The lab's file-drop signer: a box's request reaches the supervisor's qnetd CA and back."""

from __future__ import annotations

import base64
import io
import threading
import time
from pathlib import Path

import pytest
from iscsiha_lab import signer


def _serve(folder: Path, sign, stop: threading.Event) -> None:  # type: ignore[no-untyped-def]
    while not stop.is_set():
        signer.answer(folder, sign)
        time.sleep(0.05)


def _run(folder: Path, args: list[str], stdin: str, monkeypatch: pytest.MonkeyPatch,
         capsys: pytest.CaptureFixture[str]) -> tuple[int, str, str]:
    monkeypatch.setattr("sys.stdin", io.StringIO(stdin))
    code = signer.main(args, folder)
    out, err = capsys.readouterr()
    return code, out, err


def test_sign_round_trip_through_the_folder(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                            capsys: pytest.CaptureFixture[str]) -> None:
    seen: list[tuple[str, bytes]] = []

    def sign(cluster: str, request: bytes) -> bytes:
        seen.append((cluster, request))
        return b"CERT for " + request

    stop = threading.Event()
    worker = threading.Thread(target=_serve, args=(tmp_path, sign, stop))
    worker.start()
    try:
        code, out, _ = _run(tmp_path, ["sign", "san"], base64.b64encode(b"REQ").decode(),
                            monkeypatch, capsys)
    finally:
        stop.set()
        worker.join()
    assert code == 0
    assert base64.b64decode(out) == b"CERT for REQ"
    assert seen == [("san", b"REQ")]
    assert list(tmp_path.iterdir()) == []  # request and answer both consumed


def test_a_refused_signature_fails_the_program_with_the_reason(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
        capsys: pytest.CaptureFixture[str]) -> None:
    def sign(cluster: str, request: bytes) -> bytes:
        raise ValueError(f"cluster {cluster} unknown")

    stop = threading.Event()
    worker = threading.Thread(target=_serve, args=(tmp_path, sign, stop))
    worker.start()
    try:
        code, out, err = _run(tmp_path, ["sign", "x"], "UkVR", monkeypatch, capsys)
    finally:
        stop.set()
        worker.join()
    assert (code, out) == (1, "")
    assert "cluster x unknown" in err


def test_ca_prints_the_published_certificate(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                             capsys: pytest.CaptureFixture[str]) -> None:
    signer.publish_ca(tmp_path, b"-----BEGIN CERTIFICATE-----\n")
    code, out, _ = _run(tmp_path, ["ca"], "", monkeypatch, capsys)
    assert code == 0 and base64.b64decode(out) == b"-----BEGIN CERTIFICATE-----\n"


def test_no_answer_times_out_and_withdraws_the_request(tmp_path: Path) -> None:
    with pytest.raises(TimeoutError, match="supervisor running"):
        signer.request_signature(tmp_path, "san", b"REQ", wait=0.2)
    assert list(tmp_path.iterdir()) == []


def test_unknown_arguments_are_a_usage_error(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                             capsys: pytest.CaptureFixture[str]) -> None:
    assert _run(tmp_path, ["sign"], "", monkeypatch, capsys)[0] == 2
