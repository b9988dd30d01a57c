"""Rewrite a desired-state file to hold new data, keeping the admin's comments and layout.

The console edits plain tables (what tomllib reads); writing those back with
``toml_dump.dumps`` would drop every comment the admin wrote. Instead the previous
text is parsed with tomlkit and only what differs is changed in that document: a
changed value is replaced where it stands (its line's comment stays), a removed key
or table goes with its own line's comment, and a new one is written as
``toml_dump.dumps`` would write it.
"""

from __future__ import annotations

import difflib
import json
import tomllib
from collections.abc import Mapping, MutableMapping
from typing import Any

import tomlkit
import tomlkit.exceptions
from tomlkit.items import AoT, Array, Comment, Item, Table, Whitespace

from iscsiha.model.toml_dump import dumps


def update(previous: str, data: Mapping[str, Any]) -> str:
    """``data`` as TOML, written into ``previous`` so that its comments and layout stay.

    Falls back to ``dumps(data)`` (every comment lost, but the data right) when the
    previous text is no TOML tomlkit reads or the edit cannot be made in place.
    """
    try:
        text = merged(previous, data)
        if same(tomllib.loads(text), data):
            return text
    except (tomlkit.exceptions.TOMLKitError, tomllib.TOMLDecodeError, ValueError, TypeError):
        pass
    return dumps(data)


def merged(previous: str, data: Mapping[str, Any]) -> str:
    """``previous`` changed in place to hold ``data``; unchecked (``update`` checks)."""
    document = tomlkit.parse(previous)
    _sync_table(document, data, top=True)
    return tomlkit.dumps(document)


def same(a: Any, b: Any) -> bool:
    """Equal with the same TOML types: Python's ``1 == True == 1.0`` would hide a change."""
    a, b = _plain(a), _plain(b)
    if isinstance(a, Mapping) and isinstance(b, Mapping):
        return a.keys() == b.keys() and all(same(a[k], b[k]) for k in a)
    if isinstance(a, list) and isinstance(b, list):
        return len(a) == len(b) and all(same(x, y) for x, y in zip(a, b, strict=True))
    return type(a) is type(b) and bool(a == b)


def _plain(value: Any) -> Any:
    return value.unwrap() if isinstance(value, Item) else value


def _sync_table(table: MutableMapping[str, Any], new: Mapping[str, Any], *, top: bool) -> None:
    for key in [k for k in table if k not in new]:
        del table[key]
    for key, value in new.items():
        if key not in table:
            table[key] = _fresh(key, value, top=top)
            continue
        old = table[key]
        if same(old, value):
            continue  # untouched: its text, comments and layout stay as they are
        if isinstance(old, Table) and isinstance(value, Mapping):
            _sync_table(old, value, top=False)
        elif isinstance(old, AoT) and _is_table_list(value):
            _sync_tables(table, key, old, value, top=top)
        elif isinstance(old, Array) and isinstance(value, list) and "\n" in old.as_string():
            _sync_array(table, key, old, value)
        elif isinstance(old, Table | AoT):
            # A table that becomes a value: taken out and added afresh, as tomlkit 0.13
            # (Debian trixie's) writes a value put in a table's place into the table before.
            del table[key]
            table[key] = _fresh(key, value, top=top)
        else:  # a scalar, an inline table or a one-line array: replaced on its line
            table[key] = _fresh(key, value, top=top)


def _sync_tables(parent: MutableMapping[str, Any], key: str, old: AoT,
                 new: list[Mapping[str, Any]], *, top: bool) -> None:
    """An array of tables ([[volumes]]): each kept table edited in place, by its name."""
    names = [_name(t) for t in old]
    new_names = [_name(t) for t in new]
    if (None in names or None in new_names or len(set(names)) != len(names)
            or len(set(new_names)) != len(new_names)):
        parent[key] = _fresh(key, new, top=top)
        return
    for index in reversed(range(len(names))):
        if names[index] not in new_names:
            if index > 0:
                _unlink(old[index], old[index - 1])
            del old[index]
    kept = [n for n in names if n in new_names]
    if new_names[:len(kept)] != kept:  # reordered, or a new table before a kept one
        parent[key] = _fresh(key, new, top=top)
        return
    for index, table in enumerate(new[:len(kept)]):
        _sync_table(old[index], table, top=False)
    for table in new[len(kept):]:
        added = _fresh(key, [table], top=True)[0]
        if len(old):
            # Tables end with the blank line that parts them from what follows: the last
            # one's goes on to the new one, or the last one gets one before the new one.
            if old[-1].as_string().endswith("\n\n"):
                added.add(tomlkit.nl())
            else:
                old[-1].add(tomlkit.nl())
        old.append(added)


def _unlink(going: Table, before: Table) -> None:
    """Comments past a blank line at a table's end are about what follows it: those of
    ``going`` move to the end of the table before it. (The comments above ``going``, at
    the end of ``before``, stay: tomlkit has no public way to take a comment out.)"""
    theirs = _closing(going)
    if theirs:
        body = before.value.body
        if not (body and isinstance(body[-1][1], Whitespace)):
            before.add(tomlkit.nl())
        for item in theirs[1:]:
            before.add(item)


def _closing(table: Table) -> list[Comment | Whitespace]:
    """What a table's text ends with after its last value, when that is a blank line and
    comments; else nothing."""
    body = table.value.body
    last_key = max((i for i, (key, _item) in enumerate(body) if key is not None), default=-1)
    after = [item for _key, item in body[last_key + 1:]]
    closing = [item for item in after if isinstance(item, Comment | Whitespace)]
    if (len(closing) == len(after) and closing and isinstance(closing[0], Whitespace)
            and any(isinstance(item, Comment) for item in closing)):
        return closing
    return []


def _sync_array(parent: MutableMapping[str, Any], key: str, old: Array,
                new: list[Any]) -> None:
    """A multi-line array: elements removed and added, so the others keep their comments."""
    before = [json.dumps(_plain(v), sort_keys=True) for v in old]
    after = [json.dumps(v, sort_keys=True) for v in new]
    matcher = difflib.SequenceMatcher(a=before, b=after, autojunk=False)
    for tag, i1, i2, j1, j2 in reversed(matcher.get_opcodes()):
        if tag == "equal":
            continue
        for index in reversed(range(i1, i2)):
            del old[index]
        for offset, value in enumerate(new[j1:j2]):
            old.insert(i1 + offset, _fresh("v", value, top=False))
    if not same(old, new):
        parent[key] = _fresh(key, new, top=False)


def _fresh(key: str, value: Any, *, top: bool) -> Any:
    """``value`` as tomlkit items, laid out as toml_dump writes it: a table or array of
    tables at the top, an inline table or one-line array inside a table."""
    if top:
        return tomlkit.parse(dumps({key: value}))[key]
    wrapper: Any = tomlkit.parse(dumps({"t": {key: value}}))["t"]
    return wrapper[key]


def _is_table_list(value: Any) -> bool:
    return isinstance(value, list) and bool(value) and all(isinstance(v, Mapping) for v in value)


def _name(table: Mapping[str, Any]) -> str | None:
    name = table.get("name")
    return name if isinstance(name, str) else None

