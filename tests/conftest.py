"""Shared test helpers: the shipped example as data, and CI strictness for skips."""

from __future__ import annotations

import copy
import os
import tomllib
from pathlib import Path
from typing import Any, NoReturn

import pytest

ROOT = Path(__file__).resolve().parent.parent
EXAMPLE = ROOT / "examples" / "two-node.toml"


def in_ci() -> bool:
    return os.environ.get("CI", "").lower() in ("1", "true", "yes")


def skip_or_fail(reason: str) -> NoReturn:
    """Skip on a machine that lacks a tool; in CI the tool must be there, so fail."""
    if in_ci():
        pytest.fail(f"CI must provide this: {reason}")
    pytest.skip(reason)


@pytest.fixture
def example() -> dict[str, Any]:
    """A fresh, mutable copy of the shipped two-node example."""
    return copy.deepcopy(tomllib.loads(EXAMPLE.read_text()))
