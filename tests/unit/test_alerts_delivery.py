"""The agent run as its own process delivers to real receivers on the loopback: an HTTP
server for the webhook and a small SMTP server written here (no TLS, so the recipient
turns STARTTLS off, and one that insists on it shows it is refused, not skipped)."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import ROOT

TIMEOUT = 30


class Webhook(BaseHTTPRequestHandler):
    received: list[tuple[str, str, dict[str, Any]]]

    def do_POST(self) -> None:
        length = min(int(self.headers.get("Content-Length", "0")), 65536)
        body = json.loads(self.rfile.read(length))
        self.received.append((self.path, self.headers.get("Authorization", ""), body))
        self.send_response(204)
        self.end_headers()

    def log_message(self, *args: object) -> None:
        pass


class Smtp:
    """Enough SMTP for one client at a time: EHLO, MAIL, RCPT, DATA, QUIT."""

    def __init__(self) -> None:
        self.sock = socket.create_server(("127.0.0.1", 0))
        self.sock.settimeout(TIMEOUT)
        self.port = self.sock.getsockname()[1]
        self.mails: list[dict[str, Any]] = []
        self.thread = threading.Thread(target=self.serve, daemon=True)
        self.thread.start()

    def serve(self) -> None:
        while True:
            try:
                conn, _ = self.sock.accept()
            except OSError:
                return
            with conn:
                conn.settimeout(TIMEOUT)
                self.session(conn.makefile("rb"), conn)

    def session(self, rfile: Any, conn: socket.socket) -> None:
        mail: dict[str, Any] = {"rcpt": []}
        conn.sendall(b"220 test ESMTP\r\n")
        while line := rfile.readline(4096):
            verb = line[:4].upper()
            if verb == b"EHLO":
                conn.sendall(b"250-test\r\n250 8BITMIME\r\n")
            elif verb == b"MAIL":
                mail["from"] = line.decode().strip()
                conn.sendall(b"250 ok\r\n")
            elif verb == b"RCPT":
                mail["rcpt"].append(line.decode().strip())
                conn.sendall(b"250 ok\r\n")
            elif verb == b"DATA":
                conn.sendall(b"354 go\r\n")
                data = b""
                while not data.endswith(b"\r\n.\r\n") and len(data) < 1_000_000:
                    chunk = rfile.readline(65536)
                    if not chunk:
                        return
                    data += chunk
                mail["data"] = data.decode()
                self.mails.append(mail)
                mail = {"rcpt": []}
                conn.sendall(b"250 queued\r\n")
            elif verb == b"QUIT":
                conn.sendall(b"221 bye\r\n")
                return
            else:
                conn.sendall(b"502 no\r\n")

    def close(self) -> None:
        self.sock.close()


@pytest.fixture
def receivers() -> Iterator[tuple[ThreadingHTTPServer, list[Any], Smtp]]:
    received: list[Any] = []
    handler = type("Handler", (Webhook,), {"received": received})
    http = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=http.serve_forever, daemon=True)
    thread.start()
    smtp = Smtp()
    yield http, received, smtp
    http.shutdown()
    http.server_close()
    smtp.close()


# The agent's main with its settings and journal pointed here; everything else (the
# senders, the checks, the exit status) is the real agent in its own process.
RUN = """
import sys
from iscsiha.alerts import agent, run
world = run.World(settings_path=sys.argv[1], quorum_wait_s=0,
                    journal=lambda e: print("journal", e.to_json(), flush=True))
sys.exit(agent.main(sys.argv[2:], world=world))
"""


def settings(path: Path, webhook_port: int, smtp_port: int, starttls: bool) -> None:
    path.write_text(json.dumps({
        "nodes": ["san-a", "san-b"], "volume_groups": ["data"],
        "alerts": {"vg_fill_percent": 85, "recipients": [
            {"name": "hook", "kind": "webhook", "token": "hook-Secret-01",
             "url": f"http://127.0.0.1:{webhook_port}/alerts"},
            {"name": "mail", "kind": "email", "server": f"127.0.0.1:{smtp_port}",
             "from": "san@example.com", "to": ["ops@example.com"], "starttls": starttls},
        ]}}))


def run(tmp_path: Path, args: list[str], env: dict[str, str] | None = None
        ) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-c", RUN, str(tmp_path / "alerts.json"), *args],
        capture_output=True, text=True, timeout=TIMEOUT, cwd=ROOT,
        env={"PATH": os.environ.get("PATH", ""), "PYTHONPATH": str(ROOT), **(env or {})})


def test_a_fencing_alert_reaches_the_webhook_and_the_mailbox(
        tmp_path: Path, receivers: tuple[ThreadingHTTPServer, list[Any], Smtp]) -> None:
    http, received, smtp = receivers
    settings(tmp_path / "alerts.json", http.server_address[1], smtp.port, starttls=False)
    env = {"CRM_alert_kind": "fencing", "CRM_alert_node": "other-box", "CRM_alert_task": "off",
           "CRM_alert_rc": "0", "CRM_alert_timestamp": "2026-12-06T21:40:09.000001+0000",
           "CRM_alert_desc": "Operation off of other-box by this box: OK"}
    result = run(tmp_path, [], env)
    assert result.returncode == 0, result.stderr
    ((path, auth, body),) = received
    assert (path, auth) == ("/alerts", "Bearer hook-Secret-01")
    assert {k: body[k] for k in ("time", "kind", "severity", "summary")} == {
        "time": "2026-12-06T21:40:09.000001+00:00", "kind": "fenced",
        "severity": "critical", "summary": "box other-box was fenced (off)"}
    assert body["box"] == socket.gethostname()
    (mail,) = smtp.mails
    assert mail["from"].upper() == "MAIL FROM:<SAN@EXAMPLE.COM>"
    assert [r.upper() for r in mail["rcpt"]] == ["RCPT TO:<OPS@EXAMPLE.COM>"]
    assert "Subject: [iscsiha critical] box other-box was fenced (off)" in mail["data"]
    assert result.stdout.startswith("journal {")


def test_a_relay_without_starttls_is_refused_and_the_webhook_still_gets_it(
        tmp_path: Path, receivers: tuple[ThreadingHTTPServer, list[Any], Smtp]) -> None:
    http, received, smtp = receivers
    settings(tmp_path / "alerts.json", http.server_address[1], smtp.port, starttls=True)
    result = run(tmp_path, ["event", "drbd-verify-mismatch", "resource=vm", "bytes=8192"])
    assert result.returncode == 1
    assert "drbd-verify-mismatch not sent to mail" in result.stderr
    assert "Traceback" not in result.stderr
    assert smtp.mails == []  # nothing went out in clear text
    ((_, _, body),) = received
    assert (body["kind"], body["details"]) == ("drbd-verify-mismatch",
                                               {"resource": "vm", "bytes": "8192"})


def test_an_unreachable_webhook_fails_within_the_deadline(tmp_path: Path,
                                                          receivers: Any) -> None:
    free = socket.create_server(("127.0.0.1", 0))
    port = free.getsockname()[1]
    free.close()  # nothing listens there now: connection refused
    settings(tmp_path / "alerts.json", port, receivers[2].port, starttls=False)
    result = run(tmp_path, ["event", "drbd-split-brain", "resource=vm"])
    # Reported by the first node only: this host is neither, so nothing is sent at all.
    assert (result.returncode, result.stdout) == (0, "")
    result = run(tmp_path, ["event", "drbd-io-error", "resource=vm"])
    assert result.returncode == 1 and "not sent to hook" in result.stderr
    assert len(receivers[2].mails) == 1


def test_an_alert_with_nothing_to_report_ends_before_the_senders_are_loaded() -> None:
    # Pacemaker runs the agent for every operation result, dozens at once in a failover.
    probe = {"CRM_alert_kind": "resource", "CRM_alert_node": "x", "CRM_alert_rsc": "drbd-vm:0",
             "CRM_alert_task": "notify", "CRM_alert_rc": "0", "CRM_alert_target_rc": "0",
             "CRM_alert_status": "0", "CRM_alert_interval": "0"}
    result = subprocess.run(
        [sys.executable, "-c", "import sys\nfrom iscsiha.alerts import agent\n"
         "rc = agent.main([])\nprint(rc, sorted(m for m in sys.modules if m.startswith("
         "('iscsiha.alerts.run', 'iscsiha.executors', 'smtplib', 'urllib.request'))))"],
        capture_output=True, text=True, timeout=TIMEOUT, cwd=ROOT,
        env={"PATH": os.environ.get("PATH", ""), "PYTHONPATH": str(ROOT), **probe})
    assert result.stdout.strip() == "0 []", result.stderr
