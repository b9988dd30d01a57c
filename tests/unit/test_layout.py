"""The product and the lab in their own rooms: the product never imports the lab, its
wheel holds the console under iscsiha.console and nothing of the lab, and the CLI is
the top layer that nothing else imports. The packaging: one version, the license, and
every third-party import declared."""

from __future__ import annotations

import ast
import email.parser
import importlib.metadata
import re
import shutil
import subprocess
import sys
import tomllib
import zipfile
from pathlib import Path

import pytest

import iscsiha
from tests.conftest import ROOT, skip_or_fail

LAB_MODULES = ("iscsiha_lab", "lab_tests", "iscsiha.lab")
# What the product imports, and the distribution (pyproject name) that provides it.
DISTRIBUTIONS = {"rtslib_fb": "rtslib-fb", "pyroute2": "pyroute2", "dbus": "dbus-python",
                 "configshell_fb": "configshell-fb", "pyparsing": "pyparsing",
                 "tomlkit": "tomlkit"}


def imported_modules(source: Path) -> set[str]:
    found = set()
    for node in ast.walk(ast.parse(source.read_text(), str(source))):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            found.add(node.module)
            # `from iscsiha import cli` imports the module iscsiha.cli.
            found.update(f"{node.module}.{alias.name}" for alias in node.names)
    return found


def product_sources() -> list[Path]:
    # appliance/ is the console (iscsiha.console); ocf/ holds the agents' scripts.
    return [*(ROOT / "iscsiha").rglob("*.py"), *(ROOT / "appliance").rglob("*.py"),
            *(p for p in (ROOT / "ocf").iterdir() if p.is_file())]


def test_no_product_module_imports_the_lab() -> None:
    sources = product_sources()
    assert len(sources) > 60  # the walk found the product, not an empty folder
    offenders = {f"{path.relative_to(ROOT)}: {module}"
                 for path in sources for module in imported_modules(path)
                 if module.split(".")[0] in LAB_MODULES or module.startswith("iscsiha.lab")}
    assert not offenders


def test_only_the_cli_imports_the_cli() -> None:
    """What the console and the lab share with it (the wording) is in iscsiha.views."""
    cli = ROOT / "iscsiha" / "cli"
    sources = [p for p in (*product_sources(), *(ROOT / "lab" / "iscsiha_lab").rglob("*.py"))
               if cli not in p.parents]
    assert len(sources) > 80
    offenders = {f"{path.relative_to(ROOT)}: {module}"
                 for path in sources for module in imported_modules(path)
                 if module == "iscsiha.cli" or module.startswith("iscsiha.cli.")}
    assert not offenders


def test_the_console_is_the_appliance_folder_under_the_product_namespace() -> None:
    assert (ROOT / "iscsiha" / "console").resolve() == (ROOT / "appliance").resolve()


@pytest.fixture(scope="module")
def wheel(tmp_path_factory: pytest.TempPathFactory) -> Path:
    # Built from a copy of what the wheel is made of (an in-tree build would leave build/
    # in the checkout, and an old build/ could lend the wheel modules deleted since).
    tmp_path = tmp_path_factory.mktemp("wheel")
    source = tmp_path / "src"
    source.mkdir()
    for name in ("pyproject.toml", "README.md", "LICENSE"):
        shutil.copy(ROOT / name, source / name)
    for name in ("iscsiha", "appliance"):
        shutil.copytree(ROOT / name, source / name, symlinks=True,
                        ignore=shutil.ignore_patterns("__pycache__"))
    built = subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps",
                            "--disable-pip-version-check", "-q", "-w", str(tmp_path),
                            str(source)], capture_output=True, text=True, timeout=300)
    assert built.returncode == 0, built.stderr
    (found,) = tmp_path.glob("iscsiha-*.whl")
    return found


def test_the_wheel_holds_the_console_and_no_lab(wheel: Path) -> None:
    with zipfile.ZipFile(wheel) as archive:
        names = archive.namelist()
        (entry_points,) = (n for n in names if n.endswith(".dist-info/entry_points.txt"))
        scripts = archive.read(entry_points).decode()
    assert "iscsiha/console/console.py" in names
    assert not [n for n in names if n.split("/")[0] in ("iscsiha_lab", "lab", "appliance")
                or n.startswith("iscsiha/lab/")]
    assert "iscsiha-console = iscsiha.console.console:main" in scripts
    assert "iscsiha-lab" not in scripts and "lab" not in scripts.replace("iscsiha", "")


def test_the_wheel_s_metadata_has_the_one_version_the_license_and_every_import(
        wheel: Path) -> None:
    with zipfile.ZipFile(wheel) as archive:
        names = archive.namelist()
        (metadata,) = (n for n in names if n.endswith(".dist-info/METADATA"))
        headers = email.parser.HeaderParser().parsestr(archive.read(metadata).decode())
        (license_file,) = (n for n in names if n.endswith(".dist-info/licenses/LICENSE"))
        license_text = archive.read(license_file).decode()
    assert headers["Version"] == iscsiha.__version__
    assert headers["License-Expression"] == "GPL-3.0-or-later"
    assert license_text == (ROOT / "LICENSE").read_text()
    required = {re.split(r"[<>=!~;\[ ]", r, maxsplit=1)[0]
                for r in headers.get_all("Requires-Dist", []) if "extra ==" not in r}
    assert required == set(DISTRIBUTIONS.values())


def test_the_version_is_written_once() -> None:
    """pyproject reads iscsiha.__version__; no second copy to forget on a release."""
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())
    assert "version" not in project["project"]
    assert "version" in project["project"]["dynamic"]
    assert project["tool"]["setuptools"]["dynamic"]["version"] == {
        "attr": "iscsiha.__version__"}


def test_the_installed_distribution_is_this_version() -> None:
    try:
        installed = importlib.metadata.version("iscsiha")
    except importlib.metadata.PackageNotFoundError:
        skip_or_fail("iscsiha is not installed (pip install -e .)")
    assert installed == iscsiha.__version__


def test_every_third_party_import_is_a_declared_dependency() -> None:
    sources = product_sources()
    imported = {module.split(".")[0] for path in sources for module in imported_modules(path)}
    third_party = imported - set(sys.stdlib_module_names) - {"iscsiha", "__future__"}
    unknown = third_party - DISTRIBUTIONS.keys()
    assert not unknown, f"name the distribution of {sorted(unknown)} in DISTRIBUTIONS"
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    declared = {re.split(r"[<>=!~;\[ ]", d, maxsplit=1)[0] for d in project["dependencies"]}
    assert {DISTRIBUTIONS[m] for m in third_party} <= declared
    assert declared == set(DISTRIBUTIONS.values())  # nothing declared that nothing imports
