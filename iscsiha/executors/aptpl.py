"""LIO's APTPL files: a LUN's persistent reservations as the kernel writes them
(target_core_pr.c), read back to load them into a new box's LIO before the LUN is
exported there.

The file is read from a filesystem a failed box wrote last, so it is checked as
hostile input: size, keys, characters, and its PR_REG_START/END framing.
"""

from __future__ import annotations

import re

from iscsiha.errors import IscsihaError

MAX_BYTES = 1 << 20  # LIO's own buffer for the whole file is far smaller
# The keys LIO writes for one registration (and res_aptpl_metadata accepts).
KEYS = frozenset({
    "initiator_fabric", "initiator_node", "initiator_sid", "sa_res_key", "res_holder",
    "res_type", "res_scope", "res_all_tg_pt", "mapped_lun", "target_fabric",
    "target_node", "tpgt", "port_rtpi", "target_lun"})
_VALUE = re.compile(r"[A-Za-z0-9.:_-]{1,223}\Z", re.ASCII)  # iSCSI names, numbers, hex
NOTHING = "No Registrations or Reservations"


def registrations(raw: bytes, where: str) -> list[str]:
    """Each registration in ``raw`` as the line res_aptpl_metadata takes
    (key=value,key=value...); [] for a file with none."""
    if len(raw) > MAX_BYTES:
        raise _bad(where, f"{len(raw)} bytes", f"at most {MAX_BYTES} bytes")
    try:
        text = raw.rstrip(b"\0").decode("ascii")
    except UnicodeDecodeError as exc:
        raise _bad(where, "non-ASCII bytes", "ASCII text as LIO writes it") from exc
    out: list[str] = []
    current: list[str] | None = None
    for number, line in enumerate(text.split("\n"), 1):
        line = line.strip()
        if not line or line == NOTHING:
            continue
        if line.startswith("PR_REG_START:"):
            if current is not None:
                raise _bad(where, f"line {number}", "PR_REG_END before the next PR_REG_START")
            current = []
        elif line.startswith("PR_REG_END:"):
            if not current:
                raise _bad(where, f"line {number}", "a registration between START and END")
            out.append(",".join(current))
            current = None
        else:
            key, eq, value = line.partition("=")
            if current is None or not eq or key not in KEYS or not _VALUE.match(value):
                raise _bad(where, f"line {number}: {line[:80]!r}",
                           "key=value lines of " + ", ".join(sorted(KEYS)) + " inside "
                           "PR_REG_START/PR_REG_END")
            current.append(f"{key}={value}")
    if current is not None:
        raise _bad(where, "the end", "PR_REG_END closing the last registration")
    return out


def _bad(where: str, value: str, allowed: str) -> IscsihaError:
    return IscsihaError.single("bad-reservations-file", "reservations", f"{where}: {value}",
                               allowed, "the LUN is not exported with reservations that "
                               "cannot be read back")
