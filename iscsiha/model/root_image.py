"""The upgrade artifact: a root filesystem image, its checksum file and its manifest.

image/build writes three files side by side:

- ``iscsiha-root.img``: exactly the bytes of a root partition (ext4, sparse);
- ``iscsiha-root.img.sha256``: its SHA-256, in sha256sum's format;
- ``iscsiha-root.img.json``: the manifest, the same fields as the release file the
  root carries (/usr/lib/iscsiha/release.json) plus the image's size and hash.

All three are read from whoever handed the file over, so everything is checked; the
ext4 superblock is read too, so a truncated file is refused before it is hashed.
"""

from __future__ import annotations

import json
import re
import struct
from dataclasses import dataclass

from iscsiha.errors import IscsihaError, bounded, clip
from iscsiha.model.bootenv import checked_uuid

MANIFEST_FORMAT = 1
KIND = "iscsiha-root"
RELEASE_PATH = "/usr/lib/iscsiha/release.json"
SUPERBLOCK_OFFSET = 1024  # ext2/3/4: the primary superblock, 1024 bytes long
SUPERBLOCK_SIZE = 1024
_EXT4_MAGIC = 0xEF53
_INCOMPAT_64BIT = 0x80
HEX64 = re.compile(r"[0-9a-f]{64}")
_TEXT_MAX = 4096  # a manifest or release file is a few hundred bytes
WORD = re.compile(r"[A-Za-z0-9][A-Za-z0-9.+~_-]{0,63}")  # a version or a commit id


@dataclass(frozen=True)
class Release:
    """What a root filesystem is: the iscsiha version, the source commit, its UUID."""

    version: str
    commit: str
    root_uuid: str


@dataclass(frozen=True)
class Manifest:
    release: Release
    size: int  # bytes of the image file
    sha256: str


def sidecars(image: str) -> tuple[str, str]:
    """The checksum file and the manifest that go with ``image``."""
    return f"{image}.sha256", f"{image}.json"


def parse_sha256_file(text: str, where: str) -> str:
    """The hash in a sha256sum line (``HASH  NAME`` or ``HASH *NAME``), lower case."""
    lines = [line for line in text.splitlines() if line.strip()]
    found = HEX64.fullmatch(lines[0].split()[0].lower()) if len(lines) == 1 else None
    if found is None or len(text) > _TEXT_MAX:
        raise IscsihaError.single("bad-checksum-file", "file", where,
                                  "one line as sha256sum writes it: 64 hex digits, two "
                                  "spaces, the file name", clip(text.strip(), 120) or "empty")
    return found.group(0)


def json_object(text: str, where: str, what: str, code: str = "bad-manifest"
                ) -> dict[str, object]:
    """A small JSON object from a file; ``code`` names the refusal."""
    if len(text) > _TEXT_MAX:
        raise IscsihaError.single(code, "file", where,
                                  f"{what} of at most {_TEXT_MAX} bytes", f"{len(text)} bytes")
    try:
        data = json.loads(text)
    except ValueError as exc:
        raise IscsihaError.single(code, "file", where, f"{what} (JSON)",
                                  f"not JSON: {exc}") from exc
    if not isinstance(data, dict):
        raise IscsihaError.single(code, "file", where, f"{what}: a JSON object",
                                  f"is a {type(data).__name__}")
    return data


def _field(data: dict[str, object], key: str, kind: type, where: str) -> object:
    value = data.get(key)
    if not isinstance(value, kind) or isinstance(value, bool):
        raise IscsihaError.single("bad-manifest", f"{where}: {key}", bounded(value),
                                  f"a {kind.__name__}")
    return value


def release_of(data: dict[str, object], where: str) -> Release:
    """The release a manifest or release file names (format, kind, version, commit, UUID)."""
    if data.get("format") != MANIFEST_FORMAT or data.get("kind") != KIND:
        raise IscsihaError.single("bad-manifest", f"{where}: format, kind",
                                  bounded([data.get("format"), data.get("kind")]),
                                  f"format {MANIFEST_FORMAT}, kind {KIND!r} (an iscsiha root "
                                  "image from image/build)")
    words = {}
    for key in ("version", "commit"):
        value = str(_field(data, key, str, where))
        if not WORD.fullmatch(value):
            raise IscsihaError.single("bad-manifest", f"{where}: {key}", bounded(value),
                                      "letters, digits and . + ~ _ -, at most 64")
        words[key] = value
    root_uuid = checked_uuid(str(_field(data, "root_uuid", str, where)),
                             f"{where}: root_uuid")
    return Release(words["version"], words["commit"], root_uuid)


def parse_release(text: str, where: str) -> Release:
    return release_of(json_object(text, where, "a release file"), where)


def parse_manifest(text: str, where: str) -> Manifest:
    data = json_object(text, where, "an upgrade manifest")
    release = release_of(data, where)
    size = _field(data, "size", int, where)
    assert isinstance(size, int)
    if size <= 0:
        raise IscsihaError.single("bad-manifest", f"{where}: size", size, "a byte count above 0")
    digest = str(_field(data, "sha256", str, where))
    if not HEX64.fullmatch(digest):
        raise IscsihaError.single("bad-manifest", f"{where}: sha256", bounded(digest),
                                  "64 lower-case hex digits")
    return Manifest(release, size, digest)


def manifest_json(manifest: Manifest) -> str:
    """The manifest's text (what image/build writes; tests make theirs with it)."""
    r = manifest.release
    return json.dumps({"format": MANIFEST_FORMAT, "kind": KIND, "version": r.version,
                       "commit": r.commit, "root_uuid": r.root_uuid, "size": manifest.size,
                       "sha256": manifest.sha256}, indent=2) + "\n"


@dataclass(frozen=True)
class Ext4:
    """What the superblock says: the filesystem's UUID and how many bytes it spans."""

    uuid: str
    size: int


def ext4_superblock(block: bytes, where: str) -> Ext4:
    """The facts of an ext2/3/4 primary superblock (the 1024 bytes at offset 1024)."""
    if len(block) < SUPERBLOCK_SIZE:
        raise IscsihaError.single("not-ext4", "file", where,
                                  "an ext4 filesystem (its superblock at byte 1024)",
                                  f"ends after {SUPERBLOCK_OFFSET + len(block)} bytes")
    (magic,) = struct.unpack_from("<H", block, 0x38)
    if magic != _EXT4_MAGIC:
        raise IscsihaError.single("not-ext4", "file", where,
                                  "an ext4 filesystem (magic 0xef53 at byte 1080)",
                                  f"magic 0x{magic:04x}")
    blocks_lo, log_block = struct.unpack_from("<I", block, 0x4)[0], \
        struct.unpack_from("<I", block, 0x18)[0]
    (incompat,) = struct.unpack_from("<I", block, 0x60)
    blocks_hi = struct.unpack_from("<I", block, 0x150)[0] if incompat & _INCOMPAT_64BIT else 0
    if log_block > 6:  # 1 KiB << 6 = 64 KiB, ext4's largest block
        raise IscsihaError.single("not-ext4", "file", where,
                                  "an ext4 block size of 1 to 64 KiB",
                                  f"log block size {log_block}")
    size = ((blocks_hi << 32) | blocks_lo) * (1024 << log_block)
    fs_uuid = block[0x68:0x78].hex()
    return Ext4(f"{fs_uuid[:8]}-{fs_uuid[8:12]}-{fs_uuid[12:16]}-{fs_uuid[16:20]}-"
                f"{fs_uuid[20:]}", size)
