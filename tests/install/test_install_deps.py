"""The README's commands on stock Debian 12 and 13 with Debian's own Python.

tools/install-deps runs in a fresh minimal Debian root (conftest.py): Debian's
interpreter is left as Debian ships it (externally managed, PEP 668), and the venv it
makes in the checkout runs the product, the lab, the dev tools and the unit tier.
"""

from __future__ import annotations

import json

import pytest

from tests.install.debian_root import CHECKOUT, Installed

pytestmark = pytest.mark.install

VENV = f"{CHECKOUT}/.venv"

DEBIAN_PYTHON = """
import glob, importlib.util, json, os, sys, sysconfig
print(json.dumps({
    "prefix": sys.prefix,
    "externally managed": os.path.isfile(
        os.path.join(sysconfig.get_path("stdlib"), "EXTERNALLY-MANAGED")),
    "installed by pip": sorted(glob.glob("/usr/local/lib/python3*/dist-packages/*")
                               + glob.glob("/usr/local/bin/*")),
    "sees iscsiha": importlib.util.find_spec("iscsiha") is not None,
}))
"""

VENV_IMPORTS = """
import json, sys
import configshell_fb, dbus, iscsiha, iscsiha_lab, pyroute2, rtslib_fb
modules = (configshell_fb, dbus, iscsiha, iscsiha_lab, pyroute2, rtslib_fb)
print(json.dumps({"base prefix": sys.base_prefix,
                  **{m.__name__: m.__file__ for m in modules}}))
"""


def test_debian_s_python_is_left_as_debian_ships_it(installed: Installed) -> None:
    seen = json.loads(installed.run("/usr/bin/python3", "-c", DEBIAN_PYTHON,
                                    cwd="/").check().out)
    assert seen == {"prefix": "/usr", "externally managed": True, "installed by pip": [],
                    "sees iscsiha": False}


@pytest.mark.parametrize(("argv", "shows"), [
    pytest.param(("iscsiha", "--help"), "usage: iscsiha ", id="iscsiha"),
    pytest.param(("iscsiha-lab", "--help"), "usage: iscsiha-lab ", id="iscsiha-lab"),
    pytest.param(("ruff", "--version"), "ruff ", id="ruff"),
    pytest.param(("mypy", "--version"), "mypy ", id="mypy"),
    pytest.param(("pytest", "--version"), "pytest ", id="pytest"),
])
def test_the_venv_runs_the_commands_without_activation(
        installed: Installed, argv: tuple[str, ...], shows: str) -> None:
    ran = installed.run(f"{VENV}/bin/{argv[0]}", *argv[1:], cwd="/").check()
    assert ran.out.startswith(shows), ran.out[:500]


def test_the_venv_is_debian_s_python_with_debian_s_libraries_and_the_checkout(
        installed: Installed) -> None:
    seen = json.loads(installed.run(f"{VENV}/bin/python", "-c", VENV_IMPORTS,
                                    cwd="/").check().out)
    debian = "/usr/lib/python3/dist-packages/"
    site = f"{VENV}/lib/python3."
    assert seen["base prefix"] == "/usr"
    assert seen["iscsiha"] == f"{CHECKOUT}/iscsiha/__init__.py"  # editable: the checkout
    assert seen["iscsiha_lab"] == f"{CHECKOUT}/lab/iscsiha_lab/__init__.py"
    assert seen["dbus"].startswith(debian) and seen["configshell_fb"].startswith(debian)
    # Not Debian's (see tools/install-deps): from PyPI, in the venv.
    assert seen["rtslib_fb"].startswith(site) and seen["pyroute2"].startswith(site)


def test_a_second_run_installs_nothing_and_is_quick(installed: Installed) -> None:
    assert "==> .venv: pip install" in installed.first_run.out
    again = installed.run(f"{CHECKOUT}/tools/install-deps").check()
    installed.note("tools/install-deps, second run", again.seconds)
    assert again.out == ""
    assert again.seconds < 10


def test_the_unit_tier_passes_in_the_venv(installed: Installed) -> None:
    ran = installed.run(f"{VENV}/bin/python", "-m", "pytest", "-q", "-p", "no:cacheprovider",
                        "tests/unit", "lab/lab_tests/unit", timeout=1200).check()
    installed.note("unit tier", ran.seconds)
    assert " passed" in ran.out.splitlines()[-1] and "failed" not in ran.out.splitlines()[-1]
