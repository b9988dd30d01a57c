"""The accounts files of a root (passwd, group, shadow, gshadow) as text: names and ids,
and the merge of the product's own user from one root into another's.

Carrying a box's state into a new root (iscsiha.commands.upgrade_carry) never copies
these files whole: a new release may add system users and groups, with ids of their
own. What the box changed is merged instead: the user's password (its shadow line)
and its memberships of groups. Its passwd line (ids, home, shell) stays the new
release's, which defines the account. Files are owned by name: an owner's id in the
old root becomes that name's id in the new one.
"""

from __future__ import annotations

from dataclasses import dataclass

from iscsiha.errors import IscsihaError, clip

PASSWD, GROUP, SHADOW, GSHADOW = "etc/passwd", "etc/group", "etc/shadow", "etc/gshadow"
_FIELDS = {PASSWD: 7, GROUP: 4, SHADOW: 9, GSHADOW: 4}
MEMBERS = 3  # the members field of group and gshadow lines


@dataclass(frozen=True)
class Ids:
    """One root's names and ids, both ways (the first line of a name or id wins, as
    getpwnam and getpwuid find it)."""

    user_names: dict[int, str]
    group_names: dict[int, str]
    user_ids: dict[str, int]
    group_ids: dict[str, int]


def _rows(text: str, which: str, where: str) -> list[list[str] | None]:
    """Each line's fields; None for a line that holds no entry (blank, NIS ``+``/``-``)."""
    rows: list[list[str] | None] = []
    for number, line in enumerate(text.split("\n"), 1):
        if not line.strip() or line[0] in "+-":
            rows.append(None)
            continue
        fields = line.split(":")
        if len(fields) != _FIELDS[which] or not fields[0]:
            raise IscsihaError.single(
                "bad-accounts-file", "file", f"{where}, line {number}",
                f"{_FIELDS[which]} fields separated by ':', the first a name",
                f"holds {clip(line, 80)!r}")
        rows.append(fields)
    return rows


def _ids(text: str, which: str, where: str) -> tuple[dict[int, str], dict[str, int]]:
    names: dict[int, str] = {}
    ids: dict[str, int] = {}
    for row in _rows(text, which, where):
        if row is None:
            continue
        field = row[2]
        if not field.isdigit() or len(field) > 10:
            raise IscsihaError.single("bad-accounts-file", "file", where,
                                      "a numeric id in the third field of each line",
                                      f"gives {row[0]} the id {clip(field, 20)!r}")
        names.setdefault(int(field), row[0])
        ids.setdefault(row[0], int(field))
    return names, ids


def parse_ids(passwd: str, group: str, where: str) -> Ids:
    """``where``: the root the files are in, for reports."""
    user_names, user_ids = _ids(passwd, PASSWD, f"{where}/{PASSWD}")
    group_names, group_ids = _ids(group, GROUP, f"{where}/{GROUP}")
    return Ids(user_names, group_names, user_ids, group_ids)


def require_users(passwd: str, users: tuple[str, ...], where: str) -> None:
    """Refuse a new root that lacks one of the product's users (its image makes them)."""
    have = {row[0] for row in _rows(passwd, PASSWD, where) if row is not None}
    missing = [u for u in users if u not in have]
    if missing:
        raise IscsihaError.single("account-missing", "file", where,
                                  f"the accounts {', '.join(users)}, which the image makes",
                                  f"has no {', '.join(missing)}")


def merge_shadow(old: str, new: str, users: tuple[str, ...], where_old: str,
                 where_new: str) -> str:
    """``new`` with each user's line taken from ``old`` (its password and ageing); a user
    the old root does not have keeps the new root's line."""
    old_lines = {row[0]: ":".join(row) for row in _rows(old, SHADOW, where_old)
                 if row is not None and row[0] in users}
    lines = new.split("\n")
    rows = _rows(new, SHADOW, where_new)
    found = set()
    for i, row in enumerate(rows):
        if row is not None and row[0] in old_lines and row[0] not in found:
            lines[i] = old_lines[row[0]]
            found.add(row[0])
    missing = sorted(set(old_lines) - found)
    if missing:
        raise IscsihaError.single("account-missing", "file", where_new,
                                  f"a line for each of {', '.join(users)}",
                                  f"has no {', '.join(missing)}")
    return "\n".join(lines)


def merge_members(old: str, new: str, users: tuple[str, ...], which: str, where_old: str,
                  where_new: str) -> str:
    """``new`` (a group or gshadow file) with each user added to the groups it is a
    member of in ``old``; a group the new root lacks is refused, naming it."""
    wanted: dict[str, list[str]] = {}
    for row in _rows(old, which, where_old):
        if row is None:
            continue
        members = row[MEMBERS].split(",") if row[MEMBERS] else []
        for user in users:
            if user in members:
                wanted.setdefault(row[0], []).append(user)
    lines = new.split("\n")
    seen = set()
    for i, row in enumerate(_rows(new, which, where_new)):
        if row is None or row[0] not in wanted or row[0] in seen:
            continue
        seen.add(row[0])
        members = row[MEMBERS].split(",") if row[MEMBERS] else []
        members += [u for u in wanted[row[0]] if u not in members]
        row[MEMBERS] = ",".join(members)
        lines[i] = ":".join(row)
    missing = sorted(set(wanted) - seen)
    if missing:
        raise IscsihaError.single(
            "group-missing", "file", where_new,
            f"the groups {', '.join(users)} belongs to on this box",
            f"has no group {', '.join(missing)}: the new release dropped it, so the "
            "membership cannot be kept")
    return "\n".join(lines)
