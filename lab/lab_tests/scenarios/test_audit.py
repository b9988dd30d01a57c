"""The audit log on the formed pair: a CLI apply on san-a and a console change there are
recorded on both boxes (san-b's copy marked as from san-a), and no secret of the desired
state, nor one typed into a console line, is in either box's log."""

from __future__ import annotations

import json
import tomllib
from typing import Any

import pytest
from iscsiha_lab.lab import Lab
from iscsiha_lab.pair import apply

from iscsiha.audit import secrets_in

pytestmark = pytest.mark.lab
DESIRED = "/etc/iscsiha/desired.toml"
VOLUME = "auditvol"
TYPED_SECRET = "Typed-Secret-77"  # refused by the console, and never logged


def _records(lab: Lab, box: str, since: str) -> list[dict[str, Any]]:
    out = lab.exec(box, ["iscsiha", "audit", "--json", "--since", since]).check().out
    return [json.loads(line) for line in out.splitlines()]


def test_a_cli_apply_and_a_console_change_are_logged_on_both_boxes_without_secrets(
        lab: Lab) -> None:
    since = lab.exec("san-a", ["date", "-u", "+%Y-%m-%dT%H:%M:%S"]).check().out.strip()
    text = lab.exec("san-a", ["cat", DESIRED]).check().out
    data = tomllib.loads(text)
    data["volumes"] = [*data.get("volumes", []), {"name": VOLUME, "size": "16M"}]
    applied = apply(lab, data)
    assert applied.ok, applied.out + applied.err
    deleted = lab.exec("san-a", ["iscsiha-console", "/volumes", "delete", f"name={VOLUME}",
                                 "confirm=yes"], timeout=600)
    assert deleted.ok, deleted.out + deleted.err
    typed = lab.exec("san-a", ["iscsiha-console", "/cluster/discovery_auth", "set", "auth",
                               f"secret={TYPED_SECRET}"])
    assert typed.returncode != 0  # a secret in the line is refused

    mine = _records(lab, "san-a", since)
    cli = [r for r in mine if r["via"] == "cli" and " apply " in f" {r['command']} "]
    console = [r for r in mine if r["via"] == "console" and "delete" in r["command"]]
    assert cli and cli[-1]["result"] == "ok" and f'name = "{VOLUME}"' in cli[-1]["diff"]
    assert console and console[-1]["result"] == "ok" and VOLUME in console[-1]["diff"]
    assert cli[-1]["peer"] == console[-1]["peer"] == "copy on san-b"
    copies = _records(lab, "san-b", since)
    for rec in (cli[-1], console[-1]):
        assert any(c["copy_from"] == "san-a" and c["command"] == rec["command"]
                   and c["diff"] == rec["diff"] for c in copies), rec["command"]

    for box in ("san-a", "san-b"):
        for secret in sorted(secrets_in([text]) | {TYPED_SECRET}):
            found = lab.exec(box, ["sh", "-c", 'grep -rlF -e "$1" /var/log/iscsiha/', "-",
                                   secret])
            assert found.out.strip() == "", f"{box}: a secret in {found.out.strip()}"
        mode = lab.exec(box, ["stat", "-c", "%a", "/var/log/iscsiha",
                              "/var/log/iscsiha/audit.jsonl"]).check().out.split()
        assert mode == ["700", "600"]
