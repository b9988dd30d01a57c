"""A webhook receiver for the boxes' alerts, on the lab's management network.

It runs inside the lab's network namespace (entered through the supervisor's), bound
to the tiebreaker's address on the management bridge: an address only the lab has,
reachable from the boxes as a site's monitoring host would be, and from nowhere else.
Each POST is appended to a file as one JSON line: {"at": arrival time, "event": body}.

    python -m iscsiha_lab.alert_receiver ADDRESS PORT FILE
"""

from __future__ import annotations

import json
import subprocess
import sys
import time
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

from iscsiha.executors.runner import Runner
from iscsiha_lab.lab import Lab
from iscsiha_lab.supervisor import package_env
from iscsiha_lab.tools import NSENTER

PORT = 8099
BODY_MAX = 64 * 1024
PATH = "/alerts"


def handler_for(record: Callable[[dict[str, Any]], None]) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            length = int(self.headers.get("Content-Length") or 0)
            try:
                if self.path != PATH or not 0 < length <= BODY_MAX:
                    raise ValueError(f"path {self.path}, {length} bytes")
                body = json.loads(self.rfile.read(length))
            except ValueError:
                self.send_response(400)
                self.end_headers()
                return
            record({"at": time.time(), "event": body})
            self.send_response(204)
            self.end_headers()

        def log_message(self, *args: object) -> None:
            pass

    return Handler


def serve(address: str, port: int, out: Path) -> None:
    def record(entry: dict[str, Any]) -> None:
        with out.open("a") as f:
            f.write(json.dumps(entry) + "\n")

    ThreadingHTTPServer((address, port), handler_for(record)).serve_forever()


def received(out: Path) -> list[dict[str, Any]]:
    """The events received so far, in arrival order (each with its "at")."""
    if not out.exists():
        return []
    entries = [json.loads(line) for line in out.read_text().splitlines() if line.strip()]
    return [dict(e["event"], at=e["at"]) for e in entries]


class Receiver:
    """The receiver process in the lab namespace; stopped by its pid."""

    def __init__(self, lab: Lab, out: Path, port: int = PORT) -> None:
        self.lab = lab
        self.out = out
        self.address = str(lab.topology.qnetd_address)
        self.port = port
        self.process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"http://{self.address}:{self.port}{PATH}"

    def start(self) -> None:
        supervisor = self.lab.require_running().supervisor
        assert supervisor is not None
        self.out.unlink(missing_ok=True)
        self.process = Runner().spawn(
            [NSENTER.path, f"--target={supervisor.pid}", "--net", "--", sys.executable, "-m",
             "iscsiha_lab.alert_receiver", self.address, str(self.port), str(self.out)],
            env=package_env())

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(timeout=10)


if __name__ == "__main__":
    serve(sys.argv[1], int(sys.argv[2]), Path(sys.argv[3]))
