"""The console's /alerts: recipients added and removed, their secrets asked, never typed."""

from __future__ import annotations

from pathlib import Path

from tests.unit.console_fakes import Harness

TOKEN = "hook-Secret-01"


def test_a_webhook_recipient_is_added_with_its_token_asked_and_applied(tmp_path: Path) -> None:
    h = Harness(tmp_path)
    h.secrets = [TOKEN]
    assert h.run("/alerts add name=chatops kind=webhook "
                 "url=https://hooks.example.com/iscsiha secret=-") == 0, h.err.getvalue()
    applied = h.backend.applied[-1].config.alerts
    (recipient,) = applied.recipients
    assert (recipient.name, recipient.kind.value, recipient.url) == (
        "chatops", "webhook", "https://hooks.example.com/iscsiha")
    assert recipient.secret is not None and str(recipient.secret) == TOKEN
    assert TOKEN not in h.out.getvalue() + h.err.getvalue()
    h.run("ls /alerts")
    assert "chatops (webhook)" in h.out.getvalue()
    assert h.run("/alerts threshold percent=90") == 0
    assert h.backend.applied[-1].config.alerts.vg_fill_percent == 90
    assert h.run("/alerts remove name=chatops") == 0
    assert h.backend.applied[-1].config.alerts.recipients == ()


def test_an_snmp_community_is_asked_even_when_not_mentioned(tmp_path: Path) -> None:
    h = Harness(tmp_path)
    h.secrets = ["snmp-Secret-01"]
    assert h.run("/alerts add name=nms kind=snmp server=192.0.2.5") == 0, h.err.getvalue()
    (recipient,) = h.backend.applied[-1].config.alerts.recipients
    assert str(recipient.secret) == "snmp-Secret-01" and h.secrets == []


def test_a_secret_typed_into_the_line_or_a_bad_value_changes_nothing(tmp_path: Path) -> None:
    h = Harness(tmp_path)
    assert h.run(f"/alerts add name=x kind=webhook url=https://a.example/b secret={TOKEN}") != 0
    assert TOKEN not in h.out.getvalue() + h.err.getvalue()
    assert h.run("/alerts add name=x kind=pager url=https://a.example/b") != 0
    assert "pager" in h.err.getvalue() + h.out.getvalue()
    assert h.run("/alerts add name=x kind=webhook url=ftp://a.example/b") != 0
    assert h.run("/alerts threshold percent=100") != 0
    assert h.unchanged()
