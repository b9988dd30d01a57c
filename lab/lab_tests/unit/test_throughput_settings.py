"""The throughput benchmark's options and tunables: allow-listed names, whole numbers in
range, every problem reported at once, and the commands and read-backs built from them.
The `iscsiadm -m session -P 2` and `drbdsetup show` samples are written from open-iscsi's
and DRBD 8.4's output layout (neither tool runs here)."""

from __future__ import annotations

import pytest
from iscsiha_lab.desired import lab_data
from iscsiha_lab.throughput_bench import (
    IQN,
    NAME,
    PORTAL,
    bench_desired,
    parse_options,
    without_bench,
)
from iscsiha_lab.throughput_settings import (
    Settings,
    drbd_commands,
    drbd_shown,
    negotiated,
    parse_settings,
)
from iscsiha_lab.topology import default_topology

from iscsiha.errors import IscsihaError, Secret
from iscsiha.model.load import load_data

INITIATOR = "iqn.1993-08.org.debian:01:lab-initiator"


def test_chosen_settings_are_parsed_per_layer() -> None:
    settings = parse_settings(" max-buffers=8000, al-extents=3389,c-max-rate=102400",
                              "MaxBurstLength=1048576,FirstBurstLength=262144",
                              "node.session.cmds_max=128,node.session.queue_depth=64")
    assert settings == Settings(
        {"max-buffers": 8000, "al-extents": 3389, "c-max-rate": 102400},
        {"MaxBurstLength": 1048576, "FirstBurstLength": 262144},
        {"node.session.cmds_max": 128, "node.session.queue_depth": 64})
    assert parse_settings("", " ", "") == Settings()


@pytest.mark.parametrize("value", [
    "8000;reboot", "$(reboot)", "`id`", "-1", "+8000", "0x1f40", "8e3", "8000.0", "8 000",
    "", "\uff18\uff10\uff10\uff10", "8000\nreboot", "99999999999999999999", "31", "131073"])
def test_hostile_or_out_of_range_values_are_refused(value: str) -> None:
    # fullwidth digits are digits to str.isdigit and to re's \d, not to the check
    with pytest.raises(IscsihaError) as caught:
        parse_settings(f"max-buffers={value}", "", "")
    (report,) = caught.value.reports
    assert report.field == "--drbd max-buffers" and "32 to 131072" in report.allowed


@pytest.mark.parametrize("option, text", [
    ("--drbd", "max-buffers"), ("--drbd", "shared-secret=1"), ("--drbd", "../x=1"),
    ("--drbd", "MaxBurstLength=65536"), ("--iscsi", "max-buffers=8000"),
    ("--iscsi", "maxburstlength=65536"), ("--initiator", "node.startup=1"),
    ("--initiator", "node.session.auth.password=1"), ("--drbd", ",max-buffers=8000"),
])
def test_names_outside_the_allow_list_are_refused(option: str, text: str) -> None:
    args = {"--drbd": "", "--iscsi": "", "--initiator": ""} | {option: text}
    with pytest.raises(IscsihaError) as caught:
        parse_settings(args["--drbd"], args["--iscsi"], args["--initiator"])
    assert [r.code for r in caught.value.reports] == ["unknown-setting"]
    assert caught.value.reports[0].field == option


def test_every_problem_is_reported_at_once_and_cross_checks_hold() -> None:
    with pytest.raises(IscsihaError) as caught:
        parse_settings("max-buffers=8000,max-buffers=9000,al-extents=1",
                       "FirstBurstLength=70000,MaxBurstLength=65536",
                       "node.session.cmds_max=100")
    assert [(r.code, r.field) for r in caught.value.reports] == [
        ("duplicate-setting", "--drbd"), ("bad-setting", "--drbd al-extents"),
        ("bad-setting", "--iscsi FirstBurstLength"),
        ("bad-setting", "--initiator node.session.cmds_max")]


def test_drbd_settings_go_to_net_options_and_disk_options_as_separate_flags() -> None:
    settings = parse_settings("max-buffers=8000,al-extents=3389,sndbuf-size=0", "", "")
    assert drbd_commands(settings, "tput") == [
        ["drbdadm", "--", "--max-buffers=8000", "--sndbuf-size=0", "net-options", "tput"],
        ["drbdadm", "--", "--al-extents=3389", "disk-options", "tput"]]
    assert drbd_commands(Settings(), "tput") == []


SHOW = """resource tput {
    net {
        max-buffers     	8000;
        sndbuf-size     	0; # bytes
        cram-hmac-alg   	"sha256";
    }
    disk {
        c-max-rate      	102400k; # bytes/second
    }
}
"""


def test_drbdsetup_show_is_read_back_per_name_none_when_not_shown() -> None:
    assert drbd_shown(SHOW, {"max-buffers": 1, "sndbuf-size": 1, "c-max-rate": 1,
                             "al-extents": 1, "buffers": 1}) == {
        "max-buffers": "8000", "sndbuf-size": "0", "c-max-rate": "102400k",
        "al-extents": None, "buffers": None}


SESSIONS = """iSCSI Transport Class version 2.0-870
version 2.1.11
Target: iqn.2026-11.org.example.lab:alpha (non-flash)
	Current Portal: 10.99.30.110:3260,1
		Negotiated iSCSI params:
		************************
		MaxBurstLength: 262144
Target: iqn.2026-11.org.example.lab:tput (non-flash)
	Current Portal: 10.99.30.125:3260,1
	Persistent Portal: 10.99.30.125:3260,1
		**********
		Interface:
		**********
		Iface Name: default
		iSCSI Session State: LOGGED_IN
		************************
		Negotiated iSCSI params:
		************************
		HeaderDigest: None
		DataDigest: None
		MaxRecvDataSegmentLength: 262144
		MaxXmitDataSegmentLength: 524288
		FirstBurstLength: 65536
		MaxBurstLength: 1048576
		ImmediateData: Yes
		InitialR2T: Yes
		MaxOutstandingR2T: 1
"""


def test_the_negotiated_parameters_are_those_of_the_bench_session() -> None:
    got = negotiated(SESSIONS, "iqn.2026-11.org.example.lab:tput")
    assert got["MaxBurstLength"] == "1048576" and got["MaxXmitDataSegmentLength"] == "524288"
    assert "Iface Name" not in got and len(got) == 9
    assert negotiated(SESSIONS, "iqn.2026-11.org.example.lab:none") == {}


def _options(**changes: object) -> dict[str, object]:
    return {"runs": 3, "runtime_s": 10, "size_mib": 512, "resync": True, "fill_mib": None,
            "resync_timeout_s": 600, "label": "default", "drbd": "", "iscsi": "",
            "initiator": ""} | changes


def test_options_default_the_fill_to_the_bench_region() -> None:
    options = parse_options(**_options())  # type: ignore[arg-type]
    assert options.region_mib == 496 and options.fill_mib == 496


@pytest.mark.parametrize("changes", [
    {"runs": 0}, {"runs": 21}, {"runtime_s": 2}, {"runtime_s": 121}, {"size_mib": 63},
    {"size_mib": 769}, {"fill_mib": 0}, {"fill_mib": 497}, {"resync_timeout_s": 10},
    {"label": "a b"}, {"label": "x/../y"}, {"label": "x" * 61}, {"drbd": "max-buffers=1"}])
def test_options_out_of_bounds_are_refused_before_the_lab_is_touched(
        changes: dict[str, object]) -> None:
    with pytest.raises(IscsihaError):
        parse_options(**_options(**changes))  # type: ignore[arg-type]


def test_the_bench_target_is_added_to_the_state_found_and_validates() -> None:
    found = lab_data(default_topology(), Secret("bmc-Secret-1"))
    found["volumes"] = [{"name": "alpha", "size": "32M"}]
    data = bench_desired(found, INITIATOR, 512)
    config = load_data(data)
    assert [v.name for v in config.volumes] == ["alpha", NAME]
    (target,) = [t for t in config.targets if t.name == NAME]
    assert target.iqn == IQN and [str(p.address) for p in target.portals] == [PORTAL]
    assert without_bench(data)["volumes"] == found["volumes"]
    assert without_bench(data)["targets"] == []
