"""iSCSI names, sizes and LUN identity rules."""

from __future__ import annotations

import pytest

from iscsiha.model.identity import lun_identity, naa_from_serial
from iscsiha.model.names import format_size, iscsi_name_problem, parse_size


@pytest.mark.parametrize("name", [
    "iqn.2026-11.com.example:san.vm",
    "iqn.1993-08.org.debian:01:8f3a2b1c",  # open-iscsi's generated initiator name
    "iqn.1991-05.com.microsoft:backup1.example.com",
    "iqn.1998-01.com.vmware:esx1-4f2a",
    "iqn.2026-11.com.example",  # the unique part is optional (RFC 3720 3.2.6.3.1)
    "eui.02004567a425678d",
    "naa.52004567ba64678d",
    "naa.6001405d1e2b3c4f5a6b7c8d9e0f1a2b",
])
def test_valid_iscsi_names_are_accepted(name: str) -> None:
    assert iscsi_name_problem(name) is None


@pytest.mark.parametrize(("name", "why"), [
    ("iqn.2026-11.test:t1", "without a dot"),
    ("iqn.2026-00.com.example:x", "month 00"),
    ("iqn.26-11.com.example:x", "not of the form"),
    ("IQN.2026-11.com.example:x", "upper-case"),
    ("iqn.2026-11.com.example:" + "x" * 200, "bytes long"),
    ("eui.12345", "16 hex digits"),
    ("naa.123", "16 or 32 hex digits"),
    ("wwn.1234", "does not start with"),
    ("iqn.2026-11.-example.com:x", "not of the form"),
])
def test_invalid_iscsi_names_say_why(name: str, why: str) -> None:
    problem = iscsi_name_problem(name)
    assert problem is not None and why in problem


@pytest.mark.parametrize(("text", "size"), [
    ("16M", 16 * 1024**2), ("100G", 100 * 1024**3), ("100GiB", 100 * 1024**3),
    ("1.5T", 1536 * 1024**3), (" 2 T ", 2 * 1024**4), ("1P", 1024**5),
])
def test_sizes_are_powers_of_1024(text: str, size: int) -> None:
    assert parse_size(text) == size


@pytest.mark.parametrize("text", ["100", "100GB", "10g", "1.0000001G", "512K", "-1G", "G"])
def test_ambiguous_or_partial_sizes_are_refused(text: str) -> None:
    assert parse_size(text) is None


def test_format_size_uses_the_largest_whole_unit() -> None:
    assert [format_size(s) for s in (16 * 1024**2, 1536 * 1024**3, 1024**5)] == [
        "16M", "1536G", "1P"]


def test_naa_follows_lio_from_the_unit_serial() -> None:
    # LIO: NAA type 6, company id 0x001405, then the serial's first 25 hex digits,
    # skipping the dashes.
    serial = "0123abcd-4567-89ef-0123-456789abcdef"
    assert naa_from_serial(serial) == "naa.6001405" + "0123abcd456789ef012345678"


def test_lun_identity_is_the_same_for_the_same_target_and_volume() -> None:
    a = lun_identity("iqn.2026-11.com.example:san.vm", "db")
    b = lun_identity("iqn.2026-11.com.example:san.vm", "db")
    assert a == b
    assert a.serial != lun_identity("iqn.2026-11.com.example:san.other", "db").serial
    assert len(a.naa) == len("naa.") + 32 and a.naa.startswith("naa.6001405")
    assert a.product == "db"


def test_lun_serial_is_pinned_forever() -> None:
    # Changing this breaks multipath on every installed hypervisor: it must never change.
    ident = lun_identity("iqn.2026-11.com.example:san.vm", "vmstore")
    assert ident.serial == GOLDEN_SERIAL


GOLDEN_SERIAL = "e6b0bfb4-e2aa-5d09-8e29-000032bfa362"
