"""Writing the desired state as TOML: what tomllib reads back is what was written."""

from __future__ import annotations

import tomllib
from typing import Any

import pytest

from iscsiha.model.load import load_data, load_text
from iscsiha.model.toml_dump import dumps


def test_the_example_round_trips_through_dumps(example: dict[str, Any]) -> None:
    assert tomllib.loads(dumps(example)) == example
    assert load_text(dumps(example), "dumped") == load_data(example)


def test_awkward_strings_and_keys_survive() -> None:
    data = {"cluster": {"name": 'quote " back\\slash\nnewline', "odd key": 1},
            "targets": [{"luns": [{"lun": 0, "volume": "v"}], "flag": True}]}
    assert tomllib.loads(dumps(data)) == data


def test_values_toml_cannot_hold_are_refused() -> None:
    with pytest.raises(TypeError, match="NoneType"):
        dumps({"cluster": {"name": None}})
