"""Hostile and careless input from issue 17: each case is refused with a named report.

Every row says which report (code and field) the input must give; none may give a
traceback, be accepted, or echo a secret.
"""

from __future__ import annotations

import io
import os
import tomllib
from collections.abc import Mapping
from pathlib import Path
from typing import Any, cast

import pytest

from iscsiha.agents.address import SPEC as ADDRESS_SPEC
from iscsiha.agents.address import AddressAgent
from iscsiha.agents.ocf import Rc, run
from iscsiha.agents.target import SPEC as TARGET_SPEC
from iscsiha.agents.target import TargetAgent
from iscsiha.cli.main import main
from iscsiha.commands import split_brain, targets
from iscsiha.errors import IscsihaError, Secret
from iscsiha.model.identity import (
    DRBD_PORT_FIRST,
    DRBD_PORT_LAST,
    DrbdResource,
    allocate_drbd,
)
from iscsiha.model.load import load_data, load_text
from iscsiha.model.toml_dump import dumps
from iscsiha.plan.agent_params import TargetParams
from iscsiha.plan.cib import META_PORT, META_VOLUMES, previous_drbd
from iscsiha.plan.cib_merge import merge
from iscsiha.views import format_reports
from tests.conftest import EXAMPLE
from tests.unit.env_fakes import Untouchable
from tests.unit.test_config_errors import Mutation, _set


def _problems(example: dict[str, Any], mutate: Mutation) -> set[tuple[str, str]]:
    mutate(example)
    with pytest.raises(IscsihaError) as info:
        load_data(example)
    format_reports(info.value.reports)  # must print, whatever the values
    return {(r.code, r.field) for r in info.value.reports}


# -- a trailing newline, and digits that are not ASCII ----------------------------------

IQN = "iqn.2026-11.com.example:san.vm"

CONFIG_CASES: list[tuple[str, Mutation, str, str]] = [
    ("cluster name + newline", _set("cluster.name", "san\n"), "bad-name", "cluster.name"),
    ("network name + newline", _set("networks.0.name", "link0\n"), "bad-name",
     "networks[0].name"),
    ("node name + newline", _set("nodes.0.name", "san-a\n"), "bad-name", "nodes[0].name"),
    ("volume name + newline", _set("volumes.0.name", "vmstore\n"), "bad-name",
     "volumes[0].name"),
    ("target name + newline", _set("targets.0.name", "vm\n"), "bad-name", "targets[0].name"),
    ("default volume group + newline", _set("cluster.volume_group", "data\n"), "bad-value",
     "cluster.volume_group"),
    ("volume group + newline", _set("volumes.0.volume_group", "data\n"), "bad-name",
     "volumes[0].volume_group"),
    ("IQN + newline", _set("targets.0.iqn", IQN + "\n"), "bad-iscsi-name", "targets[0].iqn"),
    ("initiator + newline", _set("targets.0.initiators.0", "iqn.1993-08.org.debian:01:hv1\n"),
     "bad-iscsi-name", "targets[0].initiators[0]"),
    ("CHAP user + newline", _set("targets.0.auth.user", "hypervisors\n"), "bad-value",
     "targets[0].auth.user"),
    ("CHAP secret + newline", _set("targets.0.auth.secret", "hv-Secret-001\n"), "bad-secret",
     "targets[0].auth.secret"),
    ("BMC user + newline", _set("nodes.0.bmc.user", "fence\n"), "bad-value",
     "nodes[0].bmc.user"),
    ("BMC password + newline", _set("nodes.0.bmc.password", "bmc-a-secret\n"), "bad-secret",
     "nodes[0].bmc.password"),
    ("tiebreaker + newline", _set("cluster.tiebreaker", "qnetd.example.com\n"), "bad-value",
     "cluster.tiebreaker"),
    ("IQN year in Arabic-Indic digits", _set("targets.0.iqn", "iqn.٢٠٢٦-11.com.example:x"),
     "bad-iscsi-name", "targets[0].iqn"),
    ("IQN month with a superscript digit", _set("targets.0.iqn", "iqn.2026-1².com.example:x"),
     "bad-iscsi-name", "targets[0].iqn"),
    ("portal port ²", _set("targets.0.portals.0", "10.30.0.100:²"), "bad-portal",
     "targets[0].portals[0]"),
    ("portal port in Arabic-Indic digits", _set("targets.0.portals.0", "10.30.0.100:٣٢٦٠"),
     "bad-portal", "targets[0].portals[0]"),
    ("IPv6 portal port ²", _set("targets.0.portals.0", "[fd00::5]:²"), "bad-portal",
     "targets[0].portals[0]"),
    ("LUN number as the string ²", _set("targets.0.luns.0.lun", "²"), "wrong-type",
     "targets[0].luns[0].lun"),
    ("size in Arabic-Indic digits", _set("volumes.0.size", "\u0661\u0660\u0660G"), "bad-size",
     "volumes[0].size"),
    ("size + newline", _set("volumes.0.size", "100G\n"), "bad-size", "volumes[0].size"),
    # Decimal rounded it to 28 digits, then raised DivisionImpossible.
    ("30-digit size", _set("volumes.0.size", "1" * 30 + "G"), "bad-size", "volumes[0].size"),
    ("size above LVM's 8 EiB", _set("volumes.0.size", "8193P"), "bad-size", "volumes[0].size"),
    ("size above DRBD's 1 PiB", _set("volumes.0.size", "2P"), "size-out-of-range",
     "volumes[0].size"),
    ("huge DRBD minor", _set("volumes.0.drbd_minor", 10**100), "out-of-range",
     "volumes[0].drbd_minor"),
    ("IPv6 zone holding a newline", _set("nodes.0.bmc.address", "fe80::1%a\nb"),
     "bad-address", "nodes[0].bmc.address"),
    ("IPv6 zone on a ping host", _set("networks.3.ping", ["fe80::1%eth0"]), "bad-address",
     "networks[3].ping[0]"),
    ("subnet with an IPv6 zone", _set("networks.0.subnet", "fe80::%eth0/64"), "bad-subnet",
     "networks[0].subnet"),
    ("initiators as true", _set("targets.1.initiators", True), "wrong-type",
     "targets[1].initiators"),
    ("DRBD port below DRBD's range", _set("targets.0.drbd_port", DRBD_PORT_FIRST - 1),
     "out-of-range", "targets[0].drbd_port"),
    ("DRBD port above DRBD's range", _set("targets.0.drbd_port", DRBD_PORT_LAST + 1),
     "out-of-range", "targets[0].drbd_port"),
]


@pytest.mark.parametrize(("mutate", "code", "field"), [c[1:] for c in CONFIG_CASES],
                         ids=[c[0] for c in CONFIG_CASES])
def test_hostile_config_value_is_reported(example: dict[str, Any], mutate: Mutation,
                                          code: str, field: str) -> None:
    assert (code, field) in _problems(example, mutate)


def test_a_wrong_type_is_reported_once(example: dict[str, Any]) -> None:
    example["targets"][0]["initiators"] = 5
    with pytest.raises(IscsihaError) as info:
        load_data(example)
    assert [r.field for r in info.value.reports] == ["targets[0].initiators"]


def test_size_report_names_the_upper_bound(example: dict[str, Any]) -> None:
    example["volumes"][0]["size"] = "9" * 30 + "P"
    with pytest.raises(IscsihaError) as info:
        load_data(example)
    assert "8 EiB" in info.value.reports[0].allowed


# -- secrets of the wrong type, values too big to print --------------------------------

SECRET_CASES: list[tuple[str, Mutation, str]] = [
    ("CHAP secret as a list", _set("targets.0.auth.secret", ["hunter2-Secret-x"]),
     "targets[0].auth.secret"),
    ("mutual secret as a table", _set("targets.0.auth.mutual_secret",
                                      {"hunter2-Secret-x": "hunter2-Secret-y"}),
     "targets[0].auth.mutual_secret"),
    ("BMC password as a number", _set("nodes.0.bmc.password", 4242424242), "nodes[0].bmc.password"),
    ("discovery secret as a list", _set("discovery_auth.secret", ["hunter2", "Secret-x"]),
     "discovery_auth.secret"),
]


@pytest.mark.parametrize(("mutate", "field"), [c[1:] for c in SECRET_CASES],
                         ids=[c[0] for c in SECRET_CASES])
def test_secret_of_the_wrong_type_is_not_echoed(example: dict[str, Any], mutate: Mutation,
                                                field: str) -> None:
    mutate(example)
    with pytest.raises(IscsihaError) as info:
        load_data(example)
    report = next(r for r in info.value.reports if r.field == field)
    assert report.code == "wrong-type"
    assert isinstance(report.value, Secret)
    text = format_reports(info.value.reports)
    assert "hunter2" not in text and "4242424242" not in text
    assert "<secret, " in text


def test_a_huge_value_is_summarised_in_the_report(example: dict[str, Any]) -> None:
    example["volumes"][0]["name"] = "x" * 1_000_000
    example["cluster"]["y" * 1_000_000] = 1
    with pytest.raises(IscsihaError) as info:
        load_data(example)
    codes = {r.code for r in info.value.reports}
    assert {"bad-name", "unknown-key"} <= codes
    assert "(1000000 characters)" in format_reports(info.value.reports)
    assert len(format_reports(info.value.reports)) < 5000


# -- the TOML text itself ----------------------------------------------------------------

TOML_CASES: list[tuple[str, str]] = [
    ("10 000 nested arrays", "x = " + "[" * 10_000 + "]" * 10_000),
    ("10 000 nested inline tables", "x = " + "{a = " * 10_000 + "1" + "}" * 10_000),
    ("a 5000-digit integer", "x = " + "9" * 5000),
    ("not TOML at all", "\x00\x01[[["),
]


@pytest.mark.parametrize("text", [c[1] for c in TOML_CASES], ids=[c[0] for c in TOML_CASES])
def test_unreadable_toml_is_a_syntax_report(text: str) -> None:
    with pytest.raises(IscsihaError) as info:
        load_text(text, "cluster.toml")
    assert [(r.code, r.field) for r in info.value.reports] == [("config-syntax", "cluster.toml")]


def test_non_ascii_keys_and_astral_characters_are_dumped_as_toml_can_read_them() -> None:
    data = {"cluster": {"é²": 1, "name": "\U0001f600 \x7f"}}
    assert tomllib.loads(dumps(data)) == data


# -- the command line: any bytes give exit 0 or 1 ---------------------------------------


def _cli(tmp_path: Path, data: bytes, *args: str) -> tuple[int, str]:
    path = tmp_path / "cluster.toml"
    path.write_bytes(data)
    os.chmod(path, 0o600)
    err = io.StringIO()
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr("sys.stderr", err)
        mp.setattr("sys.stdout", io.StringIO())
        rc = main([*args[:1], str(path), *args[1:]])
    return rc, err.getvalue()


@pytest.mark.parametrize("command", ["validate", "plan"])
@pytest.mark.parametrize(("data", "code"), [
    (b"\xff\xfe[cluster]\nname = 'san'\n", "unreadable-file"),
    (b"x = " + b"[" * 10_000, "config-syntax"),
    (EXAMPLE.read_bytes().replace(b'size = "20G"', b'size = "' + b"7" * 30 + b'G"'), "bad-size"),
    (EXAMPLE.read_bytes().replace(b'"10.30.0.101:3260"', '"10.30.0.101:²"'.encode()),
     "bad-portal"),
], ids=["not UTF-8", "10 000 nested arrays", "30-digit size", "portal port ²"])
def test_cli_reports_hostile_files(tmp_path: Path, command: str, data: bytes,
                                   code: str) -> None:
    rc, err = _cli(tmp_path, data, command)
    assert rc == 1
    assert f"[{code}]" in err


def _cib(port: str | None = "7789", volumes: str | None = "vmstore:0:0",
         resource: str | None = "vm") -> str:
    params = f'<nvpair name="drbd_resource" value="{resource}"/>' if resource is not None else ""
    meta = (f'<nvpair name="{META_PORT}" value="{port}"/>' if port is not None else "") + (
        f'<nvpair name="{META_VOLUMES}" value="{volumes}"/>' if volumes is not None else "")
    return (f'<cib><primitive id="drbd-vm" class="ocf" provider="linbit" type="drbd">'
            f"<instance_attributes>{params}</instance_attributes>"
            f"<meta_attributes>{meta}</meta_attributes></primitive></cib>")


CIB_CASES: list[tuple[str, str]] = [
    ("not XML", "<cib><primitive"),
    ("port not a number", _cib(port="x")),
    ("port ²", _cib(port="²")),
    ("port in Arabic-Indic digits", _cib(port="٧٧٨٩")),
    ("port above 65535", _cib(port="99999")),
    ("port outside DRBD's range", _cib(port="22")),
    ("negative port", _cib(port="-7789")),
    ("port attribute missing", _cib(port=None)),
    ("30-digit minor", _cib(volumes="vmstore:0:" + "9" * 30)),
    ("negative minor", _cib(volumes="vmstore:0:-1")),
    ("minor in Arabic-Indic digits", _cib(volumes="vmstore:0:٣")),
    ("volume item without a minor", _cib(volumes="vmstore:0")),
    ("option-like volume name", _cib(volumes="--force:0:0")),
    ("one minor for two volumes", _cib(volumes="vmstore:0:0 db:1:0")),
    ("one number for two volumes", _cib(volumes="vmstore:0:0 db:0:1")),
    ("resource name missing", _cib(resource=None)),
    ("resource name with a newline", _cib(resource="vm&#10;")),
]


@pytest.mark.parametrize("cib", [c[1] for c in CIB_CASES], ids=[c[0] for c in CIB_CASES])
def test_damaged_previous_cib_is_refused(cib: str) -> None:
    with pytest.raises(IscsihaError) as info:
        previous_drbd(cib)
    assert {r.code for r in info.value.reports} == {"bad-previous-cib"}


def test_plan_with_a_damaged_previous_cib_exits_1(tmp_path: Path) -> None:
    previous = tmp_path / "cib.xml"
    previous.write_text(_cib(port="²"))
    rc, err = _cli(tmp_path, EXAMPLE.read_bytes(), "plan", "--previous", str(previous))
    assert rc == 1
    assert "[bad-previous-cib]" in err and META_PORT in err


@pytest.mark.parametrize("text", ["", "   \n", "\x00"])
def test_plan_with_an_empty_previous_cib_exits_1(tmp_path: Path, text: str) -> None:
    previous = tmp_path / "cib.xml"
    previous.write_text(text)
    rc, err = _cli(tmp_path, EXAMPLE.read_bytes(), "plan", "--previous", str(previous))
    assert rc == 1
    assert "[bad-previous-cib]" in err


def test_a_stock_drbd_primitive_is_not_ours_and_is_skipped() -> None:
    assert previous_drbd(_cib(port=None, volumes=None)) == {}
    assert previous_drbd(_cib()) == {"vm": DrbdResource(7789, previous_drbd(_cib())["vm"].volumes)}


# -- DRBD ports run out -----------------------------------------------------------------


def test_allocator_reports_when_every_drbd_port_is_taken(example: dict[str, Any]) -> None:
    previous = {f"old{p}": DrbdResource(p) for p in range(DRBD_PORT_FIRST, DRBD_PORT_LAST + 1)}
    with pytest.raises(IscsihaError) as info:
        allocate_drbd(load_data(example), previous)
    assert [(r.code, r.field) for r in info.value.reports] == [
        ("drbd-ports-exhausted", "targets")]


# -- the agents' parameters ------------------------------------------------------------

ADDRESS = {"OCF_RESKEY_ip": "10.30.0.100", "OCF_RESKEY_cidr_netmask": "24",
           "OCF_RESKEY_port": "3260"}
TARGET = {"OCF_RESKEY_iqn": IQN, "OCF_RESKEY_portals": "10.30.0.100:3260",
          "OCF_RESKEY_luns": "0:vmstore:/dev/drbd0:serial-a",
          "OCF_RESKEY_initiators": "iqn.1993-08.org.debian:01:hv1",
          "OCF_RESKEY_auth": "chap", "OCF_RESKEY_chap_user": "hv",
          "OCF_RESKEY_chap_secret": "hv-Secret-0001"}

AGENT_CASES: list[tuple[str, str, dict[str, str]]] = [
    ("port ²", "address", {"OCF_RESKEY_port": "²"}),
    ("port in Arabic-Indic digits", "address", {"OCF_RESKEY_port": "٣٢٦٠"}),
    ("prefix --24", "address", {"OCF_RESKEY_cidr_netmask": "--24"}),
    ("5000-digit prefix", "address", {"OCF_RESKEY_cidr_netmask": "2" * 5000}),
    ("address with a zone and newline", "address", {"OCF_RESKEY_ip": "fe80::1%a\nb"}),
    ("LUN number ²", "target", {"OCF_RESKEY_luns": "²:vmstore:/dev/drbd0:s"}),
    ("portal port ²", "target", {"OCF_RESKEY_portals": "10.30.0.100:²"}),
    ("IPv4 portal in brackets", "target", {"OCF_RESKEY_portals": "[10.30.0.100]:3260"}),
    ("device escaping /dev", "target", {"OCF_RESKEY_luns": "0:vmstore:/dev/../etc/shadow:s"}),
    ("option-like volume", "target", {"OCF_RESKEY_luns": "0:--force:/dev/drbd0:s"}),
    ("minor beyond DRBD's", "target", {"OCF_RESKEY_luns": "0:vmstore:/dev/drbd9999999:s"}),
    ("IQN + newline", "target", {"OCF_RESKEY_iqn": IQN + "\n"}),
    ("CHAP user + newline", "target", {"OCF_RESKEY_chap_user": "hv\n"}),
    ("CHAP secret too short", "target", {"OCF_RESKEY_chap_secret": "hunter2"}),
    ("items split by a non-space", "target",
     {"OCF_RESKEY_initiators": "iqn.1993-08.org.debian:01:hv1\u2028iqn.1993-08.org.x:y"}),
    ("allow_any_initiator maybe", "target", {"OCF_RESKEY_allow_any_initiator": "maybe"}),
]


def _agent(kind: str) -> tuple[Any, Any, dict[str, str]]:
    none = cast(Any, None)  # validate-all touches no executor
    if kind == "address":
        return lambda: AddressAgent(none, none, none), ADDRESS_SPEC, ADDRESS
    return lambda: TargetAgent(none, none, none, none, none), TARGET_SPEC, TARGET


@pytest.mark.parametrize(("kind", "changes"), [c[1:] for c in AGENT_CASES],
                         ids=[c[0] for c in AGENT_CASES])
def test_agent_validate_all_refuses_hostile_parameters(kind: str,
                                                       changes: dict[str, str]) -> None:
    make, spec, good = _agent(kind)
    err = io.StringIO()
    assert run(make, spec, ["agent", "validate-all"], good, io.StringIO(), err) == Rc.SUCCESS
    rc = run(make, spec, ["agent", "validate-all"], good | changes, io.StringIO(), err)
    assert rc == Rc.ERR_CONFIGURED
    assert "this is a bug" not in err.getvalue() and "hunter2" not in err.getvalue()


def test_allow_any_initiator_reads_every_ocf_boolean() -> None:
    params = {k.removeprefix("OCF_RESKEY_"): v for k, v in TARGET.items()}
    params.update(initiators="", allow_any_initiator="yes")
    assert TargetParams.from_params(params).allow_any_initiator is True


# -- timeouts ------------------------------------------------------------------------------


@pytest.mark.parametrize("timeout", [float("nan"), float("inf"), -1.0, 1e300])
def test_a_timeout_that_is_not_a_finite_bound_is_refused(timeout: float) -> None:
    untouched = cast(Any, Untouchable("the env before the timeout was checked"))
    for call in (lambda: targets.move(untouched, "vm", "san-b", timeout, print),
                 lambda: split_brain.resolve(untouched, "db", "san-b", print, timeout)):
        with pytest.raises(IscsihaError) as info:
            call()
        assert [(r.code, r.field) for r in info.value.reports] == [("bad-timeout", "timeout")]


# -- the live CIB's epoch -------------------------------------------------------------------


@pytest.mark.parametrize("epoch", ["²", "-1", "9" * 5000, "x"])
def test_a_cib_epoch_that_is_not_a_number_is_a_report(epoch: str) -> None:
    from tests.unit.test_cib_merge import LIVE, _fragment

    with pytest.raises(IscsihaError) as info:
        merge(LIVE.replace('epoch="7"', f'epoch="{epoch}"'), _fragment())
    assert [(r.code, r.field) for r in info.value.reports] == [("bad-cib", "cib epoch")]


def test_proc_drbd_minors_are_ascii_digits_only() -> None:
    from iscsiha.executors.drbd import parse_proc_drbd

    assert parse_proc_drbd(" \u0663: cs:Unconfigured\n") == {}
    assert list(parse_proc_drbd(" 3: cs:Unconfigured\n")) == [3]


def test_an_unexpected_agent_failure_says_it_is_a_bug() -> None:
    from tests.unit.test_ocf import SPEC, FlagAgent

    class Broken(FlagAgent):
        def validate(self, params: Mapping[str, str]) -> None:
            raise RuntimeError("boom")

    err = io.StringIO()
    rc = run(Broken, SPEC, ["example", "validate-all"], {"OCF_RESKEY_name": "x"},
             io.StringIO(), err)
    assert rc == Rc.ERR_GENERIC
    assert "this is a bug in iscsiha" in err.getvalue() and "RuntimeError: boom" in err.getvalue()
