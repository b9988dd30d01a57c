"""The lab's alert receiver records each POSTed event once, in arrival order, and
refuses what is not an alert."""

from __future__ import annotations

import json
import threading
import urllib.error
import urllib.request
from http.server import ThreadingHTTPServer
from pathlib import Path

import pytest
from iscsiha_lab.alert_receiver import PATH, handler_for, received


def test_posted_events_are_kept_in_arrival_order(tmp_path: Path) -> None:
    out = tmp_path / "received.jsonl"

    def record(entry: dict[str, object]) -> None:
        with out.open("a") as f:
            f.write(json.dumps(entry) + "\n")

    server = ThreadingHTTPServer(("127.0.0.1", 0), handler_for(record))
    threading.Thread(target=server.serve_forever, daemon=True).start()
    base = f"http://127.0.0.1:{server.server_address[1]}"
    try:
        for kind in ("node-lost", "fenced"):
            body = json.dumps({"kind": kind, "box": "san-b", "details": {}}).encode()
            with urllib.request.urlopen(urllib.request.Request(
                    base + PATH, data=body, method="POST"), timeout=10) as resp:
                assert resp.status == 204
        with pytest.raises(urllib.error.HTTPError) as exc:
            urllib.request.urlopen(urllib.request.Request(
                base + PATH, data=b"not json", method="POST"), timeout=10)
        assert exc.value.code == 400
    finally:
        server.shutdown()
        server.server_close()
    events = received(out)
    assert [e["kind"] for e in events] == ["node-lost", "fenced"]
    assert events[0]["at"] <= events[1]["at"]
