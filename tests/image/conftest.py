"""Fixtures for the appliance image tests (image/ of the repo)."""

from __future__ import annotations

import importlib.machinery
import importlib.util
import sys
from collections.abc import Callable
from pathlib import Path
from types import ModuleType

import pytest


def _load_script(path: Path, name: str) -> ModuleType:
    """Import a Python script that has no .py suffix (image/lib/*, rootfs scripts)."""
    loader = importlib.machinery.SourceFileLoader(name, str(path))
    spec = importlib.util.spec_from_loader(name, loader)
    assert spec is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module  # dataclasses look their module up here
    loader.exec_module(module)
    return module


@pytest.fixture(scope="session")
def load_script() -> Callable[[Path, str], ModuleType]:
    return _load_script
