"""Every parser is total: generated input gives a result or reports, never a traceback.

Each test runs a bounded number of generated cases (PROPERTY) so the unit tier stays
fast; no example database is written into the tree.
"""

from __future__ import annotations

import contextlib
import io
import math
import os
import tempfile
import tomllib
from collections.abc import Callable
from fractions import Fraction
from ipaddress import IPv6Address
from pathlib import Path
from typing import Any, cast
from xml.sax.saxutils import quoteattr

from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st

from iscsiha.agents.address import SPEC as ADDRESS_SPEC
from iscsiha.agents.address import AddressAgent
from iscsiha.agents.ocf import Rc, run
from iscsiha.agents.target import SPEC as TARGET_SPEC
from iscsiha.agents.target import TargetAgent
from iscsiha.cli.main import main
from iscsiha.errors import IscsihaError, Secret
from iscsiha.model import names
from iscsiha.model.identity import (
    DRBD_MINOR_MAX,
    DRBD_PORT_FIRST,
    DRBD_PORT_LAST,
    DrbdResource,
    DrbdSlot,
)
from iscsiha.model.links import parse_link
from iscsiha.model.load import load_data, load_text
from iscsiha.model.toml_dump import dumps
from iscsiha.model.types import AuthMode
from iscsiha.plan.agent_params import (
    AuthParams,
    LunParam,
    PortalParam,
    TargetParams,
    decode_luns,
    decode_portals,
)
from iscsiha.plan.cib import META_PORT, META_VOLUMES, previous_drbd
from iscsiha.views import format_reports
from tests.conftest import EXAMPLE
from tests.unit.test_links import with_links

PROPERTY = settings(max_examples=300, deadline=None, database=None,
                    suppress_health_check=[HealthCheck.too_slow])

TEXT_VALIDATORS: list[Callable[[str], str | None]] = [
    names.object_name_problem, names.node_name_problem, names.vg_name_problem,
    names.iscsi_name_problem, names.host_name_problem, names.chap_user_problem,
    names.chap_secret_problem, names.bmc_password_problem, names.address_problem,
    names.size_problem,
]
NUMBER_VALIDATORS: list[Callable[[object], str | None]] = [
    names.drbd_minor_problem, names.drbd_port_problem, names.drbd_volume_problem,
    names.tcp_port_problem, names.lun_problem, names.timeout_problem,
]

# Text that reaches the corners: ASCII look-alikes, other digits, line ends, controls.
hostile_text = st.one_of(
    st.text(),
    st.text(alphabet=st.sampled_from(
        # \udcff: how os.environ decodes a byte that is not UTF-8 (an agent's parameters)
        [*"aZ09.-_:[]%/ \t\n\r\x00\x7f", "²", "٣", "\u0661", "é", "\u2028", "\U0001f600",
         "\udcff"])),
    st.from_regex(r"[a-z0-9.:-]{1,40}", fullmatch=True).map(lambda s: s + "\n"),
)
any_value = st.recursive(
    st.one_of(st.none(), st.booleans(), st.integers(), st.floats(), hostile_text),
    lambda inner: st.one_of(st.lists(inner, max_size=4),
                            st.dictionaries(hostile_text, inner, max_size=4)),
    max_leaves=12,
)


def _plain(s: str) -> bool:
    """Printable ASCII with no whitespace: what every accepted name must be."""
    return s.isascii() and s.isprintable() and not any(c.isspace() for c in s)


# -- the validators ----------------------------------------------------------------------


@PROPERTY
@given(st.sampled_from(TEXT_VALIDATORS), hostile_text)
def test_text_validators_answer_none_or_a_reason_for_any_string(
        check: Callable[[str], str | None], text: str) -> None:
    problem = check(text)
    assert problem is None or (isinstance(problem, str) and problem)
    if problem is None and check is not names.size_problem:
        # BMC passwords may hold spaces (IPMI allows them); nothing else may.
        assert text.isascii() and text.isprintable()
        assert check is names.bmc_password_problem or _plain(text)


@PROPERTY
@given(st.sampled_from(TEXT_VALIDATORS + NUMBER_VALIDATORS), any_value)
def test_validators_never_raise_on_any_type(check: Callable[[Any], str | None],
                                            value: object) -> None:
    problem = check(value)
    assert problem is None or isinstance(problem, str)


@PROPERTY
@given(st.one_of(st.integers(), st.floats(), st.booleans()))
def test_range_checks_agree_with_their_bounds(value: int | float | bool) -> None:
    is_int = isinstance(value, int) and not isinstance(value, bool)
    assert (names.drbd_minor_problem(value) is None) == (is_int and 0 <= value <= DRBD_MINOR_MAX)
    assert (names.drbd_port_problem(value) is None) == (
        is_int and DRBD_PORT_FIRST <= value <= DRBD_PORT_LAST)
    assert (names.tcp_port_problem(value) is None) == (is_int and 1 <= value <= 65535)
    finite = not isinstance(value, bool) and math.isfinite(value)
    assert (names.timeout_problem(value) is None) == (
        finite and 0 <= value <= names.TIMEOUT_MAX)


object_names = st.from_regex(r"[a-z]([a-z0-9-]{0,30}[a-z0-9])?", fullmatch=True).filter(
    lambda s: s not in names.RESERVED_OBJECT_NAMES)


@PROPERTY
@given(object_names, st.sampled_from(["\n", " ", "\x00", "é", "_", "-", "A"]))
def test_object_names_from_the_grammar_pass_and_any_stray_character_fails(
        name: str, stray: str) -> None:
    assert names.object_name_problem(name) is None
    assert names.object_name_problem(name + stray) is not None


@PROPERTY
@given(hostile_text, st.integers(min_value=-(10**30), max_value=10**30),
       st.integers(min_value=-(10**30), max_value=10**30))
def test_parse_decimal_reads_ascii_digits_only(text: str, low: int, high: int) -> None:
    value = names.parse_decimal(text, low, high)
    assert value is None or (low <= value <= high and text.lstrip("-").isascii())
    assert names.parse_decimal(str(low), low, high) == (low if low <= high and abs(low)
                                                        < 10**20 else None)


# -- sizes ------------------------------------------------------------------------------

UNITS = {"K": 1, "M": 2, "G": 3, "T": 4, "P": 5}


@PROPERTY
@given(st.from_regex(r"[ \t]*[0-9]{1,30}(\.[0-9]{1,30})?[ \t]*[KMGTP](iB)?[ \t]*",
                     fullmatch=True))
def test_sizes_are_exact_and_bounded(text: str) -> None:
    number = text.strip().rstrip("iB").rstrip("KMGTP").strip()
    unit = text.strip().removesuffix("iB")[-1]
    exact = Fraction(number) * 1024 ** UNITS[unit]
    digits_ok = all(len(part) <= 20 for part in number.split("."))
    expected = (int(exact) if digits_ok and exact.denominator == 1
                and exact % (1024 * 1024) == 0 and exact <= names.SIZE_MAX else None)
    assert names.parse_size(text) == expected


@PROPERTY
@given(hostile_text)
def test_any_text_is_a_size_in_range_or_none(text: str) -> None:
    size = names.parse_size(text)
    assert size is None or (0 <= size <= names.SIZE_MAX and size % (1024 * 1024) == 0)


@PROPERTY
@given(st.integers(min_value=1, max_value=names.SIZE_MAX // 1024**2))
def test_format_size_reads_back(mib: int) -> None:
    assert names.parse_size(names.format_size(mib * 1024**2)) == mib * 1024**2


# -- addresses and iSCSI names ------------------------------------------------------------


@PROPERTY
@given(st.ip_addresses())
def test_every_address_reads_back(address: Any) -> None:
    assert names.parse_ip(str(address)) == address


@PROPERTY
@given(hostile_text)
def test_an_accepted_address_has_no_zone_or_odd_characters(text: str) -> None:
    address = names.parse_ip(text)
    assert address is None or ("%" not in str(address) and _plain(text))


iqns = st.builds(
    lambda y, m, labels, unique: f"iqn.{y:04d}-{m:02d}.{'.'.join(labels)}"
    + (f":{unique}" if unique else ""),
    st.integers(0, 9999), st.integers(1, 12),
    st.lists(st.from_regex(r"[a-z0-9]([a-z0-9-]{0,8}[a-z0-9])?", fullmatch=True),
             min_size=2, max_size=4),
    st.one_of(st.none(), st.from_regex(r"[a-z0-9.:_-]{1,40}", fullmatch=True)),
)


@PROPERTY
@given(iqns)
def test_iqns_from_the_grammar_pass_and_a_trailing_newline_fails(iqn: str) -> None:
    assert names.iscsi_name_problem(iqn) is None
    assert names.iscsi_name_problem(iqn + "\n") is not None


# -- the TOML loader ----------------------------------------------------------------------


def _load_outcome(text: str) -> None:
    """A Config, or reports that print; never anything else."""
    try:
        load_text(text, "generated.toml")
    except IscsihaError as exc:
        assert exc.reports
        assert format_reports(exc.reports)


@PROPERTY
@given(hostile_text)
def test_load_text_takes_any_text(text: str) -> None:
    _load_outcome(text)


toml_values = st.recursive(
    st.one_of(st.booleans(), st.integers(), st.floats(allow_nan=False), hostile_text),
    lambda inner: st.one_of(st.lists(inner, max_size=4),
                            st.dictionaries(hostile_text, inner, max_size=4)),
    max_leaves=16,
)


@PROPERTY
@given(st.dictionaries(hostile_text, toml_values, max_size=6))
def test_any_nested_structure_dumps_reads_back_and_loads(data: dict[str, Any]) -> None:
    text = dumps(data)
    assert tomllib.loads(text) == data
    _load_outcome(text)


def _paths(obj: Any, prefix: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
    """Every place in the example a value could be swapped."""
    items = obj.items() if isinstance(obj, dict) else enumerate(obj)
    out = []
    for key, value in items:
        out.append((*prefix, key))
        if isinstance(value, (dict, list)):
            out += _paths(value, (*prefix, key))
    return out


EXAMPLE_DATA = tomllib.loads(EXAMPLE.read_text())
SECRET_PATHS = [p for p in _paths(EXAMPLE_DATA) if isinstance(p[-1], str)
                and ("secret" in p[-1] or "password" in p[-1])]


@PROPERTY
@given(st.sampled_from(_paths(EXAMPLE_DATA)), toml_values)
def test_the_example_with_any_value_anywhere_loads_or_reports(
        path: tuple[Any, ...], value: Any) -> None:
    _load_outcome(dumps(_set_at(tomllib.loads(EXAMPLE.read_text()), path, value)))


def _set_at(data: dict[str, Any], path: tuple[Any, ...], value: Any) -> dict[str, Any]:
    obj: Any = data
    for key in path[:-1]:
        obj = obj[key]
    obj[path[-1]] = value
    return data


@PROPERTY
@given(st.sampled_from(SECRET_PATHS),
       st.one_of(st.lists(st.just("hunter2-Secret-x"), min_size=1, max_size=3),
                 st.just("hunter2-Secret-x\n"), st.just("hunter2" * 4),
                 st.dictionaries(st.just("hunter2"), st.just(1), min_size=1)))
def test_a_bad_secret_is_never_shown(path: tuple[Any, ...], value: Any) -> None:
    data = tomllib.loads(EXAMPLE.read_text())
    obj = data
    for key in path[:-1]:
        obj = obj[key]
    obj[path[-1]] = value
    try:
        load_data(data)
    except IscsihaError as exc:
        assert any(isinstance(r.value, Secret) for r in exc.reports)
        assert "hunter2" not in format_reports(exc.reports)
    else:
        raise AssertionError(f"{path} = {value!r} was accepted")


# -- the agent-parameter codec --------------------------------------------------------------

chap_users = st.from_regex(r"[\x21-\x7e]{1,40}", fullmatch=True)
chap_secrets = st.from_regex(r"[\x21-\x7e]{12,16}", fullmatch=True)
auths = st.one_of(
    st.just((AuthParams(AuthMode.NONE), {})),
    st.builds(lambda u, s: (AuthParams(AuthMode.CHAP, u), {"chap_secret": s}),
              chap_users, chap_secrets),
    st.builds(lambda u, s, m, t: (AuthParams(AuthMode.MUTUAL_CHAP, u, m),
                                  {"chap_secret": s, "mutual_secret": t}),
              chap_users, chap_secrets, chap_users, chap_secrets),
)
portals = st.builds(PortalParam, st.ip_addresses().filter(
    lambda a: not (isinstance(a, IPv6Address) and a.ipv4_mapped)), st.integers(1, 65535))
luns = st.lists(
    st.builds(lambda n, v, minor, serial: LunParam(n, v, f"/dev/drbd{minor}", serial),
              st.integers(0, 255), object_names, st.integers(0, DRBD_MINOR_MAX),
              st.from_regex(r"[A-Za-z0-9._-]{1,64}", fullmatch=True)),
    min_size=1, max_size=6, unique_by=lambda lun: lun.number)


@PROPERTY
@given(iqns, st.lists(portals, min_size=1, max_size=3), luns,
       st.lists(iqns, max_size=3), st.booleans(), auths)
def test_target_parameters_read_back_what_the_plan_wrote(
        iqn: str, portal_list: list[PortalParam], lun_list: list[LunParam],
        initiators: list[str], allow_any: bool, auth: tuple[AuthParams, dict[str, str]]
) -> None:
    params = TargetParams(iqn, tuple(portal_list), tuple(lun_list), tuple(initiators),
                          allow_any or not initiators, auth[0])
    # Pacemaker hands the agent the real secrets in place of lrm://.
    assert TargetParams.from_params(dict(params.to_params()) | auth[1]) == params


PARAM_NAMES = [p.name for p in TARGET_SPEC.params]


@PROPERTY
@given(st.dictionaries(st.sampled_from(PARAM_NAMES), hostile_text))
def test_target_parameters_decode_or_report(params: dict[str, str]) -> None:
    for decode in (lambda: TargetParams.from_params(params),
                   lambda: decode_portals(params.get("portals", "")),
                   lambda: decode_luns(params.get("luns", ""))):
        try:
            decode()
        except IscsihaError as exc:
            assert {r.code for r in exc.reports} == {"bad-agent-parameter"}


GOOD_ENV = {
    "address": {"OCF_RESKEY_ip": "10.30.0.100", "OCF_RESKEY_cidr_netmask": "24"},
    "target": {"OCF_RESKEY_iqn": "iqn.2026-11.com.example:san.vm",
               "OCF_RESKEY_portals": "10.30.0.100:3260",
               "OCF_RESKEY_luns": "0:vmstore:/dev/drbd0:serial-a",
               "OCF_RESKEY_allow_any_initiator": "true"},
}


@PROPERTY
@given(st.sampled_from(["address", "target"]), st.data())
def test_agent_validate_all_succeeds_or_refuses_as_not_configured(kind: str,
                                                                 data: st.DataObject) -> None:
    spec = ADDRESS_SPEC if kind == "address" else TARGET_SPEC
    names_ = [f"OCF_RESKEY_{p.name}" for p in spec.params]
    env = GOOD_ENV[kind] | data.draw(st.dictionaries(st.sampled_from(names_), hostile_text))
    assume(all("\x00" not in v for v in env.values()))  # an environment cannot hold NUL
    none = cast(Any, None)  # validate-all touches no executor

    def make() -> Any:
        return AddressAgent(none, none, none) if kind == "address" else TargetAgent(
            none, none, none, none, none)

    err = io.StringIO()
    rc = run(make, spec, ["agent", "validate-all"], env, io.StringIO(), err)
    assert rc in (Rc.SUCCESS, Rc.ERR_CONFIGURED), err.getvalue()
    assert "this is a bug" not in err.getvalue()


# -- the previous CIB -----------------------------------------------------------------------


def _primitive(resource: str, port: str, volumes: str, provider: str = "linbit") -> str:
    return (f'<primitive id="p" class="ocf" provider={quoteattr(provider)} type="drbd">'
            f'<instance_attributes><nvpair name="drbd_resource" value={quoteattr(resource)}/>'
            f"</instance_attributes><meta_attributes>"
            f'<nvpair name="{META_PORT}" value={quoteattr(port)}/>'
            f'<nvpair name="{META_VOLUMES}" value={quoteattr(volumes)}/>'
            f"</meta_attributes></primitive>")


xmlish = st.one_of(
    hostile_text,
    st.lists(st.builds(_primitive, hostile_text, hostile_text, hostile_text,
                       st.sampled_from(["linbit", "heartbeat"])), max_size=3).map(
        lambda prims: f"<cib>{''.join(prims)}</cib>"),
    st.lists(st.sampled_from(["<cib>", "</cib>", "<primitive ", 'provider="linbit" ',
                              'type="drbd">', "<nvpair ", "/>", "&amp;", "&x;", "<!--",
                              "<![CDATA[", "]]>", '<?xml version="1.0"?>']),
             max_size=12).map("".join),
)


@PROPERTY
@given(xmlish)
def test_previous_drbd_reads_or_reports_any_xmlish_text(text: str) -> None:
    try:
        found = previous_drbd(text)
    except IscsihaError as exc:
        assert {r.code for r in exc.reports} == {"bad-previous-cib"}
        assert format_reports(exc.reports)
        return
    for name, res in found.items():
        assert names.object_name_problem(name) is None
        assert names.drbd_port_problem(res.port) is None
        for volume, slot in res.volumes.items():
            assert names.object_name_problem(volume) is None
            assert names.drbd_minor_problem(slot.minor) is None


@PROPERTY
@given(st.dictionaries(object_names, st.integers(DRBD_PORT_FIRST, DRBD_PORT_LAST), max_size=4,
                       ).filter(lambda d: len(set(d.values())) == len(d)),
       st.lists(object_names, unique=True, max_size=12),
       st.lists(st.integers(0, DRBD_MINOR_MAX), unique=True, min_size=12, max_size=12))
def test_previous_drbd_reads_back_what_a_plan_recorded(
        ports: dict[str, int], volumes: list[str], minors: list[int]) -> None:
    expected: dict[str, DrbdResource] = {}
    for i, (name, port) in enumerate(ports.items()):
        mine = volumes[i::len(ports)]
        expected[name] = DrbdResource(port, {v: DrbdSlot(n, minors[volumes.index(v)])
                                             for n, v in enumerate(mine)})
    cib = "<cib>" + "".join(
        _primitive(name, str(res.port), " ".join(f"{v}:{s.number}:{s.minor}"
                                                 for v, s in res.volumes.items()))
        for name, res in expected.items()) + "</cib>"
    assert previous_drbd(cib) == expected


# -- the command line ------------------------------------------------------------------------

_WORK = Path(tempfile.mkdtemp(prefix="iscsiha-property-"))
EXAMPLE_BYTES = EXAMPLE.read_bytes()


def _cli(*args: str) -> tuple[int, str]:
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        rc = main(list(args))
    return rc, err.getvalue()


def _file(name: str, data: bytes) -> str:
    path = _WORK / name
    path.write_bytes(data)
    os.chmod(path, 0o600)
    return str(path)


# Arbitrary bytes, and the example with a stretch of it replaced by arbitrary bytes
# (which gets past the TOML parser far more often).
config_bytes = st.one_of(
    st.binary(max_size=2000),
    st.builds(lambda start, length, junk: EXAMPLE_BYTES[:start] + junk
              + EXAMPLE_BYTES[start + length:],
              st.integers(0, len(EXAMPLE_BYTES)), st.integers(0, 40), st.binary(max_size=40)),
)


@PROPERTY
@given(st.sampled_from(["validate", "plan"]), config_bytes)
def test_cli_exits_0_or_1_with_a_report_on_any_bytes(command: str, data: bytes) -> None:
    rc, err = _cli(command, _file("cluster.toml", data))
    assert rc in (0, 1)
    if rc == 1:
        assert "allowed:" in err and "nothing was applied." in err


@PROPERTY
@given(st.one_of(st.binary(max_size=2000), xmlish.map(lambda s: s.encode("utf-8", "replace"))))
def test_plan_previous_exits_0_or_1_with_a_report_on_any_bytes(data: bytes) -> None:
    rc, err = _cli("plan", str(EXAMPLE), "--previous", _file("cib.xml", data))
    assert rc in (0, 1)
    if rc == 1:
        assert "allowed:" in err


def _with_links() -> dict[str, Any]:
    return with_links(tomllib.loads(EXAMPLE.read_text()))


LINK_PATHS = [p for p in _paths(_with_links())
              if any(k in p for k in ("links", "bonds", "mtu"))]


@PROPERTY
@given(st.sampled_from(LINK_PATHS), toml_values)
def test_links_bonds_and_mtus_with_any_value_load_or_report(
        path: tuple[Any, ...], value: Any) -> None:
    _load_outcome(dumps(_set_at(_with_links(), path, value)))


@PROPERTY
@given(st.text(max_size=24))
def test_a_link_is_read_back_exactly_or_refused(text: str) -> None:
    link = parse_link("storage", text)
    assert link is None or link.interface == text
