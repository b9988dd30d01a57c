"""The boot slots (root A and root B) and the GRUB environment block that picks one.

The block is GRUB's own format (grub-core/lib/envblk.c): exactly 1024 bytes, the line
``# GRUB Environment Block``, then ``NAME=VALUE`` lines (a backslash escapes a newline
or a backslash in a value), the rest padded with ``#``. It lives on the ESP, FAT, a
file GRUB can write in place (save_env). GRUB's A/B script next to it (the ESP's
EFI/iscsiha/grub.cfg, from image/lib/grub-ab.cfg) reads five variables:

- ``iscsiha_good``: the slot that booted healthy last (``a`` or ``b``);
- ``iscsiha_trial``, ``iscsiha_tries``: a slot armed for one trial boot; GRUB sets the
  tries to 0 and saves that *before* it boots the trial, so a trial that dies leaves
  nothing armed and the next boot takes the good slot;
- ``iscsiha_uuid_a``, ``iscsiha_uuid_b``: each slot's root filesystem UUID, how GRUB
  finds the slot (the upgrade writes the new root's UUID when it arms it).

Everything here is pure: the block's bytes in, the checked state out, and back.
"""

from __future__ import annotations

import re
import uuid
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Literal

from iscsiha.errors import IscsihaError, bounded, clip

SIZE = 1024
SIGNATURE = b"# GRUB Environment Block\n"
Slot = Literal["a", "b"]
SLOTS: tuple[Slot, ...] = ("a", "b")
GOOD, TRIAL, TRIES = "iscsiha_good", "iscsiha_trial", "iscsiha_tries"
UUID_VARS: dict[Slot, str] = {"a": "iscsiha_uuid_a", "b": "iscsiha_uuid_b"}
OURS = (GOOD, TRIAL, TRIES, UUID_VARS["a"], UUID_VARS["b"])
TRIES_MAX = 1  # grub-ab.cfg counts one trial boot down; it knows no other number
_NAME = re.compile(r"[A-Za-z0-9_]{1,64}")
_UUID = re.compile(r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}")


def other(slot: Slot) -> Slot:
    return "b" if slot == "a" else "a"


def partition_name(slot: Slot) -> str:
    """The GPT partition name of a slot (image/build's layout)."""
    return f"root-{slot}"


# -- the block's bytes ---------------------------------------------------------------------

def parse_block(data: bytes, where: str) -> dict[str, str]:
    """The variables of a block, in order; anything grub-editenv would not write is refused.

    GRUB skips what it cannot read; we refuse it instead, naming the file: a block
    that is not what GRUB or grub-editenv writes has been damaged, and guessing which
    slot it meant could boot the wrong one.
    """
    def bad(what: str, value: object) -> IscsihaError:
        return IscsihaError.single("boot-env-corrupt", "file", where,
                                   f"a GRUB environment block of {SIZE} bytes as "
                                   "grub-editenv writes it", f"{what}: {bounded(value)!r}")

    if len(data) != SIZE:
        raise bad("its size is not 1024 bytes", len(data))
    if not data.startswith(SIGNATURE):
        raise bad("no '# GRUB Environment Block' line", data[:len(SIGNATURE)])
    try:
        text = data[len(SIGNATURE):].decode("utf-8")
    except UnicodeDecodeError as exc:
        raise bad("not UTF-8 text at byte", exc.start + len(SIGNATURE)) from exc
    if "\0" in text:
        raise bad("a NUL byte at", len(SIGNATURE) + text.index("\0"))
    found: dict[str, str] = {}
    pos = 0
    while pos < len(text):
        if text[pos] == "#":  # padding, or a comment line
            end = text.find("\n", pos)
            pos = len(text) if end < 0 else end + 1
            continue
        line, pos = _one_line(text, pos)
        if line is None:
            raise bad("a line with no end", clip(text[pos:], 60))
        name, eq, value = line.partition("=")
        if not eq or not _NAME.fullmatch(name):
            raise bad("not a NAME=VALUE line", clip(line, 60))
        if name in found:
            raise bad("a variable set twice", name)
        found[name] = value
    return found


def _one_line(text: str, pos: int) -> tuple[str | None, int]:
    """The unescaped line from ``pos`` and where the next begins (None: no newline)."""
    out: list[str] = []
    while pos < len(text):
        c = text[pos]
        if c == "\\" and pos + 1 < len(text):
            out.append(text[pos + 1])
            pos += 2
        elif c == "\n":
            return "".join(out), pos + 1
        else:
            out.append(c)
            pos += 1
    return None, pos


# -- the slots' state ----------------------------------------------------------------------

@dataclass(frozen=True)
class BootEnv:
    """Which slot is good, which is armed for a trial boot, and each slot's root UUID."""

    good: Slot
    trial: Slot | None = None
    tries: int = 0
    uuid_a: str | None = None
    uuid_b: str | None = None
    others: tuple[tuple[str, str], ...] = ()  # variables someone else put there, kept

    def uuid(self, slot: Slot) -> str | None:
        return self.uuid_a if slot == "a" else self.uuid_b

    @property
    def armed(self) -> Slot | None:
        """The slot GRUB boots next as a trial, if any."""
        return self.trial if self.trial is not None and self.tries > 0 else None


def from_variables(variables: Mapping[str, str], where: str) -> BootEnv:
    """The state in a parsed block; a value GRUB's A/B script would misread is refused."""
    def bad(name: str, allowed: str) -> IscsihaError:
        return IscsihaError.single("boot-env-value", f"{where}: {name}",
                                   bounded(variables.get(name)), allowed)

    good = _slot(variables.get(GOOD, ""))
    if good is None:
        raise bad(GOOD, "a or b")
    trial = _slot(variables.get(TRIAL, ""))
    if trial is None and variables.get(TRIAL, ""):
        raise bad(TRIAL, "a, b or empty")
    tries_text = variables.get(TRIES, "0")
    if tries_text not in {str(n) for n in range(TRIES_MAX + 1)}:
        raise bad(TRIES, f"0 to {TRIES_MAX}")
    uuids: dict[Slot, str | None] = {}
    for slot, name in UUID_VARS.items():
        value = variables.get(name, "")
        if value and not _UUID.fullmatch(value):
            raise bad(name, "a filesystem UUID in lower case (8-4-4-4-12 hex digits) or empty")
        uuids[slot] = value or None
    return BootEnv(good=good, trial=trial, tries=int(tries_text),
                   uuid_a=uuids["a"], uuid_b=uuids["b"],
                   others=tuple((k, v) for k, v in variables.items() if k not in OURS))


def _slot(value: str) -> Slot | None:
    return "a" if value == "a" else "b" if value == "b" else None


def to_variables(env: BootEnv) -> dict[str, str]:
    """The block's variables for ``env``: ours first, in a fixed order, then the others."""
    return {GOOD: env.good, TRIAL: env.trial or "", TRIES: str(env.tries),
            UUID_VARS["a"]: env.uuid_a or "", UUID_VARS["b"]: env.uuid_b or "",
            **dict(env.others)}


def read(data: bytes, where: str) -> BootEnv:
    return from_variables(parse_block(data, where), where)


def checked_uuid(value: str, what: str) -> str:
    try:
        canonical = str(uuid.UUID(value))
    except ValueError as exc:
        raise IscsihaError.single("bad-uuid", what, bounded(value),
                                  "a filesystem UUID (8-4-4-4-12 hex digits)") from exc
    if canonical != value.lower():
        raise IscsihaError.single("bad-uuid", what, bounded(value),
                                  "a filesystem UUID (8-4-4-4-12 hex digits)")
    return canonical


# -- what the commands do to it -----------------------------------------------------------------

def disarmed(env: BootEnv) -> BootEnv:
    """Nothing armed: the next boot takes the good slot (set before a slot is rewritten)."""
    return BootEnv(env.good, None, 0, env.uuid_a, env.uuid_b, env.others)


def armed(env: BootEnv, slot: Slot, root_uuid: str) -> BootEnv:
    """``slot`` holding the root ``root_uuid``, armed for one trial boot."""
    if slot == env.good:
        raise IscsihaError.single("trial-of-good-slot", "slot", slot,
                                  f"the slot that is not good ({other(env.good)})",
                                  "is the good slot: a trial boot of it means nothing")
    if root_uuid == env.uuid(other(slot)):
        raise IscsihaError.single("same-root-uuid", "root filesystem UUID", root_uuid,
                                  "a UUID the other slot does not have",
                                  f"slot {other(slot)} has it: GRUB and the kernel could "
                                  "not tell the two roots apart")
    uuid_a, uuid_b = (root_uuid, env.uuid_b) if slot == "a" else (env.uuid_a, root_uuid)
    return BootEnv(env.good, slot, TRIES_MAX, uuid_a, uuid_b, env.others)


def marked_good(env: BootEnv, booted: Slot) -> BootEnv | None:
    """The state once the booted slot proved healthy; None when it already is good.

    The booted slot must be the trial GRUB just took (tries used up). Any other
    booted slot means the block and the boot disagree: refused, not guessed.
    """
    if booted == env.good:
        return None
    if env.trial != booted:
        raise IscsihaError.single("booted-slot-unknown", "booted slot", booted,
                                  f"the good slot ({env.good}) or the trial slot "
                                  f"({env.trial or 'none armed'})",
                                  "the boot environment does not say this slot was tried")
    return BootEnv(booted, None, 0, env.uuid_a, env.uuid_b, env.others)
