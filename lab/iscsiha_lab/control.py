"""Talking to the lab supervisor: one JSON request, one JSON answer, per connection.

The socket is a path in the run directory (0600, root), reachable from any
network namespace: the CLI runs on the host, the BMC power script inside the
lab namespace, and both reach the same supervisor.
"""

from __future__ import annotations

import json
import socket
from pathlib import Path
from typing import Any

from iscsiha.errors import IscsihaError, Report


def request(socket_path: Path, payload: dict[str, Any], timeout: float = 60.0) -> dict[str, Any]:
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
        sock.settimeout(timeout)
        try:
            sock.connect(str(socket_path))
        except (FileNotFoundError, ConnectionRefusedError) as exc:
            raise IscsihaError.single(
                "lab-not-running", "state-dir", str(socket_path.parent),
                "the run directory of a lab started with `iscsiha-lab up`",
                "no lab supervisor answers there") from exc
        sock.sendall(json.dumps(payload).encode() + b"\n")
        sock.shutdown(socket.SHUT_WR)
        chunks = []
        while chunk := sock.recv(65536):
            chunks.append(chunk)
    answer: dict[str, Any] = json.loads(b"".join(chunks) or b"{}")
    if not answer.get("ok"):
        raise IscsihaError(error_reports(answer))
    return answer


def error_answer(exc: IscsihaError) -> dict[str, Any]:
    return {"ok": False, "errors": [
        {"code": r.code, "field": r.field, "value": r.value if isinstance(
            r.value, (str, int, float, type(None))) else str(r.value),
         "allowed": r.allowed, "message": r.message}
        for r in exc.reports]}


def error_reports(answer: dict[str, Any]) -> list[Report]:
    errors = answer.get("errors") or [{"code": "supervisor-error", "field": "supervisor",
                                       "value": None, "allowed": "", "message": str(answer)}]
    return [Report(str(e["code"]), str(e["field"]), e.get("value"), str(e["allowed"]),
                   str(e.get("message", ""))) for e in errors]
