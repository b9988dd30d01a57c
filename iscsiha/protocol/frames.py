"""How stage-root's image travels after its request line: chunks, each a frame, so a
chunk of zeros costs 9 bytes instead of 4 MiB (a root image is 2 GiB of which about
a third is data).

A frame is one kind byte, ``D`` (data follows) or ``Z`` (that many zero bytes), and an
8-byte big-endian length of 1 to CHUNK; a data frame's bytes follow. The frames add
up to exactly the image's size; anything else is refused, naming the offset.
"""

from __future__ import annotations

import struct
from collections.abc import Callable, Iterator

from iscsiha.errors import IscsihaError

CHUNK = 4 << 20
DATA, ZEROS = b"D", b"Z"
_HEAD = struct.Struct(">cQ")
_ZERO = bytes(CHUNK)


def encode(read: Callable[[int], bytes], size: int, source: str) -> Iterator[bytes]:
    """The frames of the first ``size`` bytes ``read`` returns (a shorter source is
    refused)."""
    done = 0
    while done < size:
        chunk = read(min(CHUNK, size - done))
        if not chunk:
            raise IscsihaError.single("truncated", "file", source, f"{size} bytes",
                                      f"ended after {done} bytes while being sent")
        done += len(chunk)
        if chunk == _ZERO[:len(chunk)]:
            yield _HEAD.pack(ZEROS, len(chunk))
        else:
            yield _HEAD.pack(DATA, len(chunk)) + chunk


def decode(read: Callable[[int], bytes], size: int) -> Iterator[bytes]:
    """The image's bytes, chunk by chunk, from its frames."""
    done = 0
    while done < size:
        head = _exactly(read, _HEAD.size, done, size)
        kind, length = _HEAD.unpack(head)
        if kind not in (DATA, ZEROS) or not 1 <= length <= min(CHUNK, size - done):
            raise IscsihaError.single(
                "bad-frame", "image sent", f"offset {done}", f"a frame D or Z of 1 to "
                f"{min(CHUNK, size - done)} bytes", f"is {kind!r} of {length} bytes")
        yield _ZERO[:length] if kind == ZEROS else _exactly(read, length, done, size)
        done += length


def _exactly(read: Callable[[int], bytes], length: int, done: int, size: int) -> bytes:
    data = b""
    while len(data) < length:
        part = read(length - len(data))
        if not part:
            raise IscsihaError.single("truncated", "image", "the image sent", f"{size} bytes",
                                      f"ended after {done} bytes")
        data += part
    return data
