"""The desired state's [alerts]: read, refused with reasons, and copied for the agent."""

from __future__ import annotations

import tomllib
from pathlib import Path
from typing import Any

import pytest

from iscsiha.alerts import config
from iscsiha.commands import node_steps
from iscsiha.errors import IscsihaError, Secret
from iscsiha.model.alerts import alerts_data, load_alerts_data
from iscsiha.model.fields import is_secret_key
from iscsiha.model.load import load_data, load_text
from iscsiha.model.types import HostPort, RecipientKind
from iscsiha.views import format_reports
from tests.conftest import EXAMPLE

ALERTS_EXAMPLE = Path(EXAMPLE).parent / "alerts.toml"
EXAMPLE_SECRETS = ("smtp-Secret-01", "snmp-Secret-01", "hook-Secret-01")


def with_alerts(example: dict[str, Any]) -> dict[str, Any]:
    example["alerts"] = tomllib.loads(ALERTS_EXAMPLE.read_text())["alerts"]
    return example


def refused(data: dict[str, Any]) -> list[tuple[str, str]]:
    with pytest.raises(IscsihaError) as exc:
        load_data(data)
    return [(r.code, r.field) for r in exc.value.reports]


def test_the_alerts_example_loads_with_each_kind() -> None:
    config = load_text(EXAMPLE.read_text() + "\n" + ALERTS_EXAMPLE.read_text())
    got = {r.name: r for r in config.alerts.recipients}
    assert config.alerts.vg_fill_percent == 85
    assert got["ops-mail"].kind is RecipientKind.EMAIL
    assert got["ops-mail"].server == HostPort("smtp.example.com", 587)
    assert got["ops-mail"].starttls is True  # on unless turned off
    assert isinstance(got["ops-mail"].secret, Secret)
    assert got["nms"].server == HostPort("192.0.2.5", 162)  # the trap port by default
    assert got["chatops"].url == "https://hooks.example.com/iscsiha"
    assert got["loghost"].server == HostPort("192.0.2.6", 514)


def test_without_alerts_there_are_no_recipients_and_the_default_threshold(
        example: dict[str, Any]) -> None:
    config = load_data(example)
    assert config.alerts.recipients == () and config.alerts.vg_fill_percent == 85


@pytest.mark.parametrize(("index", "key", "value", "code"), [
    (0, "server", "smtp.example.com:0", "bad-server"),
    (0, "server", "bad host name!", "bad-server"),
    (0, "from", "san@example.com\r\nRCPT TO:<x@y>", "bad-mail-address"),
    (0, "to", ["ops@example.com", "<x>"], "bad-mail-address"),
    (0, "to", [], "no-mail-recipients"),
    (0, "starttls", "yes", "wrong-type"),
    (1, "community", "has space", "bad-secret"),
    (1, "server", "[::1", "bad-server"),
    (2, "url", "ftp://hooks.example.com/", "bad-url"),
    (2, "url", "https://user:pw@hooks.example.com/", "bad-url"),
    (2, "url", "https://hooks.example.com:99999/", "bad-url"),
    (2, "url", "https://hooks.example.com/\nX: y", "bad-url"),
    (3, "url", "https://x.example.com/", "unknown-key"),  # not a syslog setting
    (0, "kind", "pager", "bad-choice"),
    (1, "name", "bad name", "bad-name"),
])
def test_a_bad_recipient_value_is_refused_naming_it(example: dict[str, Any], index: int,
                                                    key: str, value: object,
                                                    code: str) -> None:
    data = with_alerts(example)
    data["alerts"]["recipients"][index][key] = value
    field = f"alerts.recipients[{index}].{key}"
    assert any(c == code and f in (field, f"{field}[1]") for c, f in refused(data))


def test_a_login_needs_both_user_and_password(example: dict[str, Any]) -> None:
    data = with_alerts(example)
    del data["alerts"]["recipients"][0]["password"]
    assert ("login-half-set", "alerts.recipients[0].password") in refused(data)


def test_recipient_names_are_unique_and_the_threshold_bounded(
        example: dict[str, Any]) -> None:
    data = with_alerts(example)
    data["alerts"]["recipients"][1]["name"] = "ops-mail"
    data["alerts"]["vg_fill_percent"] = 100
    problems = refused(data)
    assert ("duplicate-recipient-name", "alerts.recipients[1].name") in problems
    assert ("out-of-range", "alerts.vg_fill_percent") in problems


def test_a_refused_alert_secret_is_never_shown(example: dict[str, Any]) -> None:
    data = with_alerts(example)
    data["alerts"]["recipients"][1]["community"] = "hunter2 hunter2"
    data["alerts"]["recipients"][2]["token"] = ["hunter2"]
    with pytest.raises(IscsihaError) as exc:
        load_data(data)
    assert "hunter2" not in format_reports(exc.value.reports)


def test_the_agents_copy_reads_back_as_the_same_alerts(example: dict[str, Any]) -> None:
    alerts = load_data(with_alerts(example)).alerts
    assert load_alerts_data(alerts_data(alerts), "alerts file") == alerts


def test_the_agent_reads_the_settings_where_apply_writes_them() -> None:
    assert node_steps.Box(None, desired_path=node_steps.DESIRED_PATH  # type: ignore[arg-type]
                          ).alerts_path == config.PATH


@pytest.mark.parametrize(("raw", "named"), [
    (b"\xff\xfe", "JSON"),
    (b"[" * 100_000, "JSON"),
    (b'{"nodes": ["san-a"]}', "an object with"),
    (b'{"nodes": ["san-a", "bad name"], "alerts": {}, "volume_groups": ["data"]}',
     "the two node names"),
    (b'{"nodes": ["san-a", "san-b"], "alerts": {}, "volume_groups": ["-x"]}',
     "volume group names"),
    (b'{"nodes": ["san-a", "san-b"], "alerts": {"recipients": [{"name": "w", '
     b'"kind": "webhook", "url": "file:///etc/shadow"}]}, "volume_groups": ["data"]}',
     "http://"),
    (b" " * (config.SIZE_MAX + 1), "bytes"),
])
def test_a_damaged_or_planted_settings_file_is_refused_naming_the_problem(
        raw: bytes, named: str) -> None:
    with pytest.raises(IscsihaError) as exc:
        config.read("/etc/iscsiha/alerts.json", lambda p: raw)
    assert named in format_reports(exc.value.reports)


def test_no_settings_file_means_no_recipients() -> None:
    assert config.read("/etc/iscsiha/alerts.json", lambda p: None) == config.NONE


def test_every_alert_secret_key_counts_as_a_secret() -> None:
    # What redacts secrets elsewhere (reports, logs of the desired state) asks this.
    assert all(is_secret_key(k) for k in ("password", "community", "token"))
    assert not any(is_secret_key(k) for k in ("server", "url", "user", "to"))
