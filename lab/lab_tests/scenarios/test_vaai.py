"""What VMware's VAAI (and Windows' ODX-like copy offload) asks of a LUN, from the
initiator with sg3-utils: COMPARE AND WRITE (VMFS's ATS locking) writes only when the
compare matches and reports MISCOMPARE otherwise, and EXTENDED COPY copies between two
LUNs inside the target. The target agent enables both explicitly (emulate_caw,
emulate_3pc); this checks the LUNs the appliance exports answer them.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from iscsiha_lab.initiator import Initiator, iqn
from iscsiha_lab.lab import Lab
from iscsiha_lab.pair import TARGETS, converge, failover_desired, wait_healthy

pytestmark = pytest.mark.lab
TARGET = iqn("alpha")  # LUN 0 the block verifier's volume, LUN 1 the database's
PORTAL = TARGETS["alpha"][0][0]
LBA = 64
MISCOMPARE = 14  # sg3-utils' exit status for a MISCOMPARE sense key
COPY_MIB = 4


@pytest.fixture(scope="module")
def luns(lab: Lab) -> Iterator[tuple[Initiator, list[str]]]:
    initiator = Initiator(lab)
    converge(lab, failover_desired(lab, initiator.iqn))
    wait_healthy(lab, "the pair healthy")
    initiator.configure(TARGET, PORTAL)
    try:
        yield initiator, initiator.login(TARGET, PORTAL, 2)
    finally:
        initiator.logout(TARGET, PORTAL)


def _block(initiator: Initiator, fill: str, size: int) -> str:
    """A file of one logical block of the byte ``fill`` on the initiator; its path."""
    path = f"/tmp/block-{fill}"
    initiator.run("python3", "-c", f"open('{path}', 'wb').write(bytes([{ord(fill)}]) * {size})")
    return path


def _read(initiator: Initiator, disk: str, size: int) -> str:
    return initiator.run("sh", "-c", f"dd if={disk} bs={size} skip={LBA} count=1 iflag=direct "
                                     "status=none | od -An -c | head -1").split()[0]


def test_compare_and_write_writes_on_a_match_and_reports_a_miscompare(
        luns: tuple[Initiator, list[str]]) -> None:
    initiator, (disk, _) = luns
    size = int(initiator.run("blockdev", "--getss", disk))
    a, b = _block(initiator, "A", size), _block(initiator, "B", size)
    initiator.run("dd", f"if={a}", f"of={disk}", f"bs={size}", f"seek={LBA}", "count=1",
                  "oflag=direct", "status=none")
    # The data-out buffer is the block to compare, then the block to write.
    initiator.run("sh", "-c", f"cat {a} {b} > /tmp/caw-ab && cat {a} {a} > /tmp/caw-aa")
    caw = ["sg_compare_and_write", f"--lba={LBA}", "--num=1", f"--xferlen={2 * size}", disk]
    initiator.run(*caw[:-1], "--in=/tmp/caw-ab", disk)
    assert _read(initiator, disk, size) == "B"
    stale = initiator.try_run(*caw[:-1], "--in=/tmp/caw-aa", disk)
    assert stale.returncode == MISCOMPARE, stale.out + stale.err
    assert _read(initiator, disk, size) == "B"  # nothing written on a miscompare


def test_extended_copy_copies_between_two_luns_of_the_target(
        luns: tuple[Initiator, list[str]]) -> None:
    initiator, (source, dest) = luns
    initiator.run("sh", "-c", f"dd if=/dev/urandom of={source} bs=1M count={COPY_MIB} "
                              "oflag=direct status=none")
    initiator.run("sg_xcopy", f"if={source}", f"of={dest}", "bs=512",
                  f"count={COPY_MIB * 2048}", timeout=300)
    digests = {initiator.run("sh", "-c", f"dd if={disk} bs=1M count={COPY_MIB} iflag=direct "
                                         "status=none | sha256sum").split()[0]
               for disk in (source, dest)}
    assert len(digests) == 1
