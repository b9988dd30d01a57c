"""Writing edited data into the previous desired-state text: the data exactly, the
comments and layout of what did not change kept."""

from __future__ import annotations

import copy
import tomllib
from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st

from iscsiha.model.toml_dump import dumps
from iscsiha.model.toml_edit import merged, same, update
from tests.conftest import EXAMPLE

SOURCE = EXAMPLE.read_text()
SCALARS = st.one_of(st.booleans(), st.integers(-5, 5), st.text("abz é#\"\\\n", max_size=6))


def comment_lines(text: str) -> list[str]:
    return [line for line in text.splitlines() if line.lstrip().startswith("#")]


def mutate(draw: st.DrawFn, value: Any, depth: int = 0) -> Any:
    """A changed copy of ``value``: keys and elements removed, added, changed, deeper too."""
    if isinstance(value, dict):
        out = dict(value)
        for key in list(out):
            choice = draw(st.sampled_from(["keep", "keep", "drop", "change"]))
            if choice == "drop":
                del out[key]
            elif choice == "change":
                out[key] = mutate(draw, out[key], depth + 1)
        if draw(st.booleans()):
            out[draw(st.sampled_from(["new", "name", "size", "odd key"]))] = draw(SCALARS)
        return out
    if isinstance(value, list):
        out_list = [mutate(draw, v, depth + 1) if draw(st.booleans()) else v for v in value
                    if draw(st.integers(0, 3))]  # about one in four dropped
        if value and draw(st.booleans()):
            new = copy.deepcopy(value[0])
            if isinstance(new, dict):
                new["name"] = draw(st.sampled_from(["fresh", "vm", "db", "other"]))
            out_list.insert(draw(st.integers(0, len(out_list))), new)
        return out_list
    return draw(SCALARS) if depth < 4 else value


@st.composite
def edited_examples(draw: st.DrawFn) -> dict[str, Any]:
    data: dict[str, Any] = mutate(draw, tomllib.loads(SOURCE))
    if draw(st.booleans()):
        data["extra"] = {"mode": draw(SCALARS), "luns": [{"lun": 0}]}
    return data


@settings(max_examples=300, deadline=None)
@given(edited_examples())
def test_any_edit_is_written_exactly_in_place(data: dict[str, Any]) -> None:
    """No fallback needed: merged() alone gives the data, whatever was changed."""
    text = merged(SOURCE, data)
    assert same(tomllib.loads(text), data)
    assert update(SOURCE, data) == text


def test_an_unchanged_document_is_written_back_byte_for_byte() -> None:
    assert update(SOURCE, tomllib.loads(SOURCE)) == SOURCE


def test_a_change_replaces_only_its_own_line() -> None:
    data = tomllib.loads(SOURCE)
    data["cluster"]["tiebreaker"] = "10.0.0.6"
    line = 'tiebreaker = "10.0.0.5"        # corosync-qnetd on a third machine\n'
    assert line in SOURCE
    assert update(SOURCE, data) == SOURCE.replace(line, line.replace("10.0.0.5", "10.0.0.6"))


def test_added_tables_follow_the_last_one_with_its_blank_line() -> None:
    data = tomllib.loads(SOURCE)
    data["volumes"].append({"name": "logs", "size": "5G"})
    text = update(SOURCE, data)
    assert '[[volumes]]\nname = "backup"\nsize = "500G"\n\n[[volumes]]\nname = "logs"\n' \
           'size = "5G"\n\n[[targets]]\n' in text
    assert comment_lines(text) == comment_lines(SOURCE)


def test_reordered_tables_are_rewritten_with_the_data_right() -> None:
    data = tomllib.loads(SOURCE)
    data["volumes"].reverse()
    text = update(SOURCE, data)
    assert same(tomllib.loads(text), data)
    assert comment_lines(text) == comment_lines(SOURCE)  # none was inside the volumes


def test_types_count_not_only_values() -> None:
    """1 == True and 1 == 1.0 in Python, but not in TOML: such a change is written."""
    previous = "[t]\nflag = 1  # one\nsize = 2\n"
    data = {"t": {"flag": True, "size": 2.0}}
    assert not same(tomllib.loads(previous), data)
    assert tomllib.loads(update(previous, data)) == data
    assert same(tomllib.loads(update(previous, data)), data)


def test_text_tomlkit_cannot_read_falls_back_to_a_plain_dump() -> None:
    data = {"cluster": {"name": "san"}}
    assert update("[[[ not toml", data) == dumps(data)


SECTIONS = '''# top
[[v]]
name = "a"

# about b
[[v]]
name = "b"  # b itself

# about c
# more about c
[[v]]
name = "c"

# about the rest
[t]
x = 1
'''


def test_a_deleted_table_leaves_the_comments_below_it_above_what_they_are_about() -> None:
    for drop, gone in ((["b"], ["# b itself"]), (["c"], []), (["b", "c"], ["# b itself"])):
        data = tomllib.loads(SECTIONS)
        data["v"] = [v for v in data["v"] if v["name"] not in drop]
        text = update(SECTIONS, data)
        assert tomllib.loads(text) == data
        kept = [c for c in SECTIONS.splitlines() if "#" in c and c[c.index("#"):] not in gone]
        assert [c for c in text.splitlines() if "#" in c] == kept, drop
        assert "\n\n# about the rest\n[t]\n" in text  # still just above what it is about
    data = tomllib.loads(SECTIONS)
    data["v"].pop(1)
    assert "\n# about c\n# more about c\n[[v]]\nname = \"c\"\n" in update(SECTIONS, data)


def test_deleting_the_last_network_keeps_the_comment_about_the_nodes() -> None:
    data = tomllib.loads(SOURCE)
    data["networks"].pop()
    text = update(SOURCE, data)
    assert "# seconds on every fence call.\n[[nodes]]\n" in text
    assert "# Hosts that answer ping" not in text  # the storage network's own comment
