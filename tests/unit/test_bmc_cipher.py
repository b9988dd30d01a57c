"""A BMC's IPMI cipher suite: checked by the model, given to fence_ipmilan, set by
`cluster init` for both boxes."""

from __future__ import annotations

import xml.etree.ElementTree as ET
from typing import Any

import pytest

from iscsiha.commands.bootstrap_params import cli_name, desired_data, load_sections
from iscsiha.errors import IscsihaError
from iscsiha.model.load import load_data
from iscsiha.plan.cib import nvpairs
from iscsiha.plan.plan import make_plan
from tests.unit.bootstrap_fakes import request


def fence_params(data: dict[str, Any]) -> dict[str, dict[str, str]]:
    cib = ET.fromstring(make_plan(load_data(data), {}, b"k" * 32).cib)
    return {p.get("id", ""): nvpairs(p.find("instance_attributes"))
            for p in cib.iter("primitive") if p.get("class") == "stonith"}


def test_a_cipher_goes_to_that_box_s_fence_device_only(example: dict[str, Any]) -> None:
    example["nodes"][1]["bmc"]["cipher"] = 3
    params = fence_params(example)
    first, second = (f"fence-{n['name']}" for n in example["nodes"])
    assert params[second]["cipher"] == "3"
    assert "cipher" not in params[first]  # none given: ipmitool asks the BMC


@pytest.mark.parametrize("bad", [18, -1, "3", 10**30, [3], {"suite": 3}, True])
def test_a_cipher_outside_ipmi_s_suites_is_refused_naming_it(example: dict[str, Any],
                                                             bad: object) -> None:
    example["nodes"][0]["bmc"]["cipher"] = bad
    with pytest.raises(IscsihaError) as caught:
        load_data(example)
    (report,) = caught.value.reports
    # Huge and nested values are reported by a summary of them, never whole.
    assert report.field == "nodes[0].bmc.cipher"
    assert report.code == ("out-of-range" if type(bad) is int else "wrong-type")


def test_init_sets_the_cipher_on_both_boxes() -> None:
    data, _ = desired_data(request(bmc_cipher="3"), "san-a")
    assert [n["bmc"]["cipher"] for n in data["nodes"]] == [3, 3]
    assert "cipher" not in desired_data(request(), "san-a")[0]["nodes"][0]["bmc"]


# Out of range, words, a huge number (past int()'s digit limit), a non-ASCII digit (٣ is
# str.isdecimal), a newline, an option, nothing: each refused, naming the parameter.
@pytest.mark.parametrize("bad", ["18", "three", "9" * 5000, "\u0663", "3\n", "-C 17", ""])
def test_init_refuses_a_bad_cipher_naming_its_parameter(bad: str) -> None:
    data, names = desired_data(request(bmc_cipher=bad), "san-a", cli_name)
    with pytest.raises(IscsihaError) as caught:
        load_sections(data, names)
    assert {r.field for r in caught.value.reports} == {"--bmc-cipher"}
