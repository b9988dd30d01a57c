"""Fixtures for the appliance image tests (image/ of the repo)."""

from __future__ import annotations

import importlib.machinery
import importlib.util
import json
import os
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from types import ModuleType

import pytest

# The built image (image/build writes it); ISCSIHA_IMAGE names another.
IMAGE = Path(os.environ.get("ISCSIHA_IMAGE",
                            Path(__file__).resolve().parents[2] / "image/out/iscsiha.img"))


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


def root_offset(image: Path) -> int:
    """Where root A's filesystem starts in the disk image, in bytes (debugfs's ?offset=)."""
    table = json.loads(subprocess.run(["sfdisk", "--json", str(image)], capture_output=True,
                                      text=True, check=True).stdout)["partitiontable"]
    (root,) = [p for p in table["partitions"] if p.get("name") == "root-a"]
    return int(root["start"]) * int(table.get("sectorsize", 512))
