"""The upgrade artifact's files read strictly: the checksum line, the manifest, the
release file, and the ext4 superblock of a real filesystem made here with mke2fs."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from iscsiha.errors import IscsihaError
from iscsiha.model import root_image
from iscsiha.model.root_image import Manifest, Release
from tests.unit.root_images import MIB, make_ext4

UUID = "6f2a3c1e-0b7d-5e4f-9a8b-1c2d3e4f5a6b"
HASH = "ab" * 32


def superblock(path: Path) -> bytes:
    with open(path, "rb") as f:
        f.seek(root_image.SUPERBLOCK_OFFSET)
        return f.read(root_image.SUPERBLOCK_SIZE)


@pytest.mark.parametrize("mib", [8, 64])
def test_the_superblock_gives_the_uuid_and_the_bytes_the_filesystem_spans(
        tmp_path: Path, mib: int) -> None:
    image = tmp_path / "root.img"
    make_ext4(image, mib, UUID)
    assert root_image.ext4_superblock(superblock(image), "root.img") == \
        root_image.Ext4(UUID, mib * MIB)


def test_a_64bit_filesystem_counts_its_high_block_bits(tmp_path: Path) -> None:
    image = tmp_path / "root.img"
    make_ext4(image, 16, UUID, "-O", "64bit", "-b", "1024")
    assert root_image.ext4_superblock(superblock(image), "root.img").size == 16 * MIB


def test_something_not_ext4_or_cut_short_is_refused(tmp_path: Path) -> None:
    zeros = bytes(root_image.SUPERBLOCK_SIZE)
    with pytest.raises(IscsihaError) as exc:
        root_image.ext4_superblock(zeros, "zeros.img")
    assert exc.value.reports[0].code == "not-ext4"
    assert "magic 0x0000" in exc.value.reports[0].message
    image = tmp_path / "root.img"
    make_ext4(image, 8, UUID)
    with pytest.raises(IscsihaError) as exc:
        root_image.ext4_superblock(superblock(image)[:100], "cut.img")
    assert "ends after 1124 bytes" in exc.value.reports[0].message


@pytest.mark.parametrize(("text", "digest"), [
    (f"{HASH}  iscsiha-root.img\n", HASH),
    (f"{HASH} *iscsiha-root.img\n", HASH),
    (f"{HASH.upper()}  x\n\n", HASH),
    (HASH, HASH),
])
def test_a_sha256sum_line_gives_its_hash(text: str, digest: str) -> None:
    assert root_image.parse_sha256_file(text, "f.sha256") == digest


@pytest.mark.parametrize("text", ["", "   \n", f"{HASH[:-1]}  f\n", f"{HASH}x  f\n",
                                  f"{HASH}  a\n{HASH}  b\n", "g" * 64 + "  f\n",
                                  f"{HASH}  " + "f" * 5000])
def test_a_checksum_file_that_is_not_one_sha256sum_line_is_refused(text: str) -> None:
    with pytest.raises(IscsihaError) as exc:
        root_image.parse_sha256_file(text, "f.sha256")
    assert exc.value.reports[0].code == "bad-checksum-file"
    assert exc.value.reports[0].value == "f.sha256"


def manifest(**changes: object) -> str:
    data: dict[str, object] = {"format": 1, "kind": "iscsiha-root", "version": "0.1.0",
                               "commit": "897ca16e" * 5 + "-dirty", "root_uuid": UUID,
                               "size": 2048 * MIB, "sha256": HASH}
    data.update(changes)
    return json.dumps({k: v for k, v in data.items() if v is not None})


def test_a_manifest_gives_the_release_size_and_hash() -> None:
    assert root_image.parse_manifest(manifest(), "m.json") == Manifest(
        Release("0.1.0", "897ca16e" * 5 + "-dirty", UUID), 2048 * MIB, HASH)


@pytest.mark.parametrize(("changes", "field"), [
    ({"format": 2}, "format, kind"),
    ({"kind": "something-else"}, "format, kind"),
    ({"version": None}, "version"),
    ({"version": "0.1 ; rm"}, "version"),
    ({"version": "x" * 65}, "version"),
    ({"commit": 123}, "commit"),
    ({"size": "2048"}, "size"),
    ({"size": True}, "size"),
    ({"size": 0}, "size"),
    ({"sha256": HASH.upper()}, "sha256"),
    ({"sha256": HASH[:60]}, "sha256"),
    ({"root_uuid": "nope"}, "root_uuid"),
])
def test_a_manifest_field_out_of_bounds_is_refused_by_name(changes: dict[str, object],
                                                           field: str) -> None:
    with pytest.raises(IscsihaError) as exc:
        root_image.parse_manifest(manifest(**changes), "m.json")
    assert exc.value.reports[0].field == f"m.json: {field}"


@pytest.mark.parametrize("text", ["", "[]", "{", '"text"', "{" * 100000, " " * 5000 + "{}"])
def test_a_manifest_that_is_not_a_small_json_object_is_refused(text: str) -> None:
    with pytest.raises(IscsihaError) as exc:
        root_image.parse_manifest(text, "m.json")
    assert exc.value.reports[0].code == "bad-manifest"


def test_manifest_json_reads_back_as_the_same_manifest() -> None:
    m = Manifest(Release("0.2.0", "abc", UUID), 4096, HASH)
    assert root_image.parse_manifest(root_image.manifest_json(m), "m.json") == m


def test_a_release_file_is_the_manifest_without_size_and_hash() -> None:
    text = manifest(size=None, sha256=None)
    assert root_image.parse_release(text, "release.json") == Release(
        "0.1.0", "897ca16e" * 5 + "-dirty", UUID)
