"""What the built image holds of ours: the product and its console, nothing of the lab.

Read from root A of image/out/iscsiha.img with debugfs (no mount, no loop device).
"""

from __future__ import annotations

import shutil
import subprocess

import pytest

from tests.conftest import skip_or_fail
from tests.image.conftest import IMAGE, root_offset

DIST = "/usr/lib/python3/dist-packages"
UNITS = "/usr/lib/systemd/system"
WANTS = "/etc/systemd/system/multi-user.target.wants"
COROSYNC_REQUIRES = "/etc/systemd/system/corosync.service.requires"
TIMERS_WANTS = "/etc/systemd/system/timers.target.wants"


@pytest.fixture(scope="module")
def listing() -> dict[str, set[str]]:
    if not IMAGE.exists():
        skip_or_fail(f"no built image at {IMAGE} (image/build makes it)")
    if shutil.which("debugfs") is None or shutil.which("sfdisk") is None:
        skip_or_fail("debugfs and sfdisk are needed to read the image (e2fsprogs, fdisk)")
    folders = ("/usr/bin", DIST, f"{DIST}/iscsiha", f"{DIST}/iscsiha/console",
               f"{DIST}/iscsiha/agents", UNITS, WANTS, COROSYNC_REQUIRES, "/usr/lib/iscsiha",
               f"{UNITS}/sbd.service.d", TIMERS_WANTS, f"{UNITS}/getty@.service.d",
               f"{UNITS}/serial-getty@.service.d", "/usr/lib/udev/rules.d")
    commands = "".join(f"ls {folder}\n" for folder in folders)
    done = subprocess.run(["debugfs", "-f", "-", f"{IMAGE}?offset={root_offset(IMAGE)}"],
                          input=commands, capture_output=True, text=True, check=True)
    found: dict[str, set[str]] = {}
    for block, folder in zip(done.stdout.split("debugfs: ls ")[1:], folders, strict=True):
        found[folder] = {word for word in block.split() if not word.isdigit()
                         and not word.startswith("(")}
    return found


def test_the_image_has_the_console_under_the_product_and_no_lab(
        listing: dict[str, set[str]]) -> None:
    assert {"iscsiha", "iscsiha-console"} <= listing["/usr/bin"]
    assert "console.py" in listing[f"{DIST}/iscsiha/console"]
    assert "iscsiha-lab" not in listing["/usr/bin"]
    assert not {"iscsiha_lab", "appliance"} & listing[DIST]
    assert "lab" not in listing[f"{DIST}/iscsiha"]


def test_the_image_starts_the_agent_helper_at_boot(listing: dict[str, set[str]]) -> None:
    assert "iscsiha-agent-helper" in listing["/usr/bin"]
    assert {"helper.py", "thin.py"} <= listing[f"{DIST}/iscsiha/agents"]
    assert "iscsiha-agent-helper.service" in listing[UNITS]
    assert "iscsiha-agent-helper.service" in listing[WANTS]


def test_the_image_ships_the_metrics_timer_off(listing: dict[str, set[str]]) -> None:
    assert {"iscsiha-metrics.service", "iscsiha-metrics.timer"} <= listing[UNITS]
    assert "iscsiha-metrics.timer" not in listing[TIMERS_WANTS]


def test_the_image_watches_the_volume_groups_fill_and_can_send_traps(
        listing: dict[str, set[str]]) -> None:
    assert "iscsiha-alert" in listing["/usr/bin"]
    assert "snmptrap" in listing["/usr/bin"]
    assert {"iscsiha-space.service", "iscsiha-space.timer"} <= listing[UNITS]
    assert "iscsiha-space.timer" in listing[TIMERS_WANTS]


def test_the_image_ships_the_verify_timer_on(listing: dict[str, set[str]]) -> None:
    assert {"iscsiha-verify.service", "iscsiha-verify.timer"} <= listing[UNITS]
    assert "iscsiha-verify.timer" in listing[TIMERS_WANTS]


def test_the_image_fences_with_a_watchdog_wherever_corosync_runs(
        listing: dict[str, set[str]]) -> None:
    """sbd starts with corosync, and finds a watchdog: softdog when the board has none."""
    assert "sbd.service" in listing[COROSYNC_REQUIRES]
    assert "iscsiha-watchdog.conf" in listing[f"{UNITS}/sbd.service.d"]
    assert "watchdog-ready" in listing["/usr/lib/iscsiha"]


def test_the_local_consoles_greet_with_addresses_and_set_admins_first_password(
        listing: dict[str, set[str]]) -> None:
    assert "local-console" in listing["/usr/lib/iscsiha"]
    assert "login" in listing["/usr/bin"]  # not Essential since trixie: in image/packages
    assert "iscsiha.conf" in listing[f"{UNITS}/getty@.service.d"]
    assert "iscsiha.conf" in listing[f"{UNITS}/serial-getty@.service.d"]
    assert "90-iscsiha-greeting.rules" in listing["/usr/lib/udev/rules.d"]


def test_ssh_refuses_passwords_even_once_admin_has_one() -> None:
    if not IMAGE.exists():
        skip_or_fail(f"no built image at {IMAGE} (image/build makes it)")
    done = subprocess.run(["debugfs", "-R", "cat /etc/ssh/sshd_config.d/50-iscsiha.conf",
                           f"{IMAGE}?offset={root_offset(IMAGE)}"],
                          capture_output=True, text=True, check=True)
    settings = [line.split() for line in done.stdout.splitlines()]
    assert ["PasswordAuthentication", "no"] in settings
    assert ["KbdInteractiveAuthentication", "no"] in settings
