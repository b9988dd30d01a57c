"""The product and the lab in their own rooms: the product never imports the lab, its
wheel holds the console under iscsiha.console and nothing of the lab, and the CLI is
the top layer that nothing else imports."""

from __future__ import annotations

import ast
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

from tests.conftest import ROOT

LAB_MODULES = ("iscsiha_lab", "lab_tests", "iscsiha.lab")


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


def test_the_wheel_holds_the_console_and_no_lab(tmp_path: Path) -> None:
    # Built from a copy of what the wheel is made of (an in-tree build would leave build/
    # in the checkout, and an old build/ could lend the wheel modules deleted since).
    source = tmp_path / "src"
    source.mkdir()
    for name in ("pyproject.toml", "README.md"):
        shutil.copy(ROOT / name, source / name)
    for name in ("iscsiha", "appliance"):
        shutil.copytree(ROOT / name, source / name, symlinks=True,
                        ignore=shutil.ignore_patterns("__pycache__"))
    subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps",
                    "--disable-pip-version-check", "-q", "-w", str(tmp_path), str(source)],
                   check=True, capture_output=True, timeout=300)
    (wheel,) = tmp_path.glob("iscsiha-*.whl")
    with zipfile.ZipFile(wheel) as archive:
        names = archive.namelist()
        (entry_points,) = (n for n in names if n.endswith(".dist-info/entry_points.txt"))
        scripts = archive.read(entry_points).decode()
    assert "iscsiha/console/console.py" in names
    assert not [n for n in names if n.split("/")[0] in ("iscsiha_lab", "lab", "appliance")
                or n.startswith("iscsiha/lab/")]
    assert "iscsiha-console = iscsiha.console.console:main" in scripts
    assert "iscsiha-lab" not in scripts and "lab" not in scripts.replace("iscsiha", "")
