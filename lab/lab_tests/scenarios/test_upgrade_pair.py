"""The pair's rolling upgrade (`iscsiha upgrade pair`) under the acknowledged-write
verifier and the database workload, to a next release built from the same source
(iscsiha_lab.upgrade_lab): the other box is upgraded, this box's new root is not
healthy and rolls back by itself, and the upgrade run again finishes the pair. It ends
as every failover scenario does: 0 I/O errors, 0 acknowledged writes lost, 0 commits lost,
fsck clean, the pair healthy with identical bytes on both boxes.

It runs after test_replace_box: a box joining from a freshly flashed root needs the
release its peer runs. With -s it prints the command's timed steps and the pauses.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from iscsiha_lab import faults, timeline, upgrade_lab
from iscsiha_lab.initiator import Initiator
from iscsiha_lab.lab import Lab
from iscsiha_lab.pair import logout_all, prepare

from lab_tests.scenarios.conftest import REPO

pytestmark = pytest.mark.lab
PROBE_SECONDS = 2700  # the verifier's bound: the rolling upgrade of both boxes


@pytest.fixture(scope="module")
def next_root(lab: Lab) -> Path:
    return upgrade_lab.next_for(REPO)


@pytest.fixture(scope="module")
def pair(lab: Lab) -> Iterator[tuple[Initiator, list[str]]]:
    initiator = Initiator(lab)
    try:
        yield initiator, prepare(lab, initiator)
    finally:
        logout_all(initiator)


def _run(lab: Lab, pair: tuple[Initiator, list[str]], name: str,
         scenario: faults.Scenario) -> dict[str, Any]:
    result = faults.run(lab, *pair, name, scenario, probe_seconds=PROBE_SECONDS)
    print(f"\n{name}: " + json.dumps({k: v for k, v in result.items()
                                      if k not in ("timeline", "steps")}, sort_keys=True))
    print("the command's steps (s after it began):\n" + "\n".join(
        f"{at:6d}  {what}" for at, what in result["steps"]))
    # Where the longest pause went: the journals' phases from 30 s before it.
    since = result["gap_from_wall"] - 30
    around = [r for r in timeline.rows(lab, since)
              if r["t"] <= result["gap_to_wall"] - since + 5]
    print(f"the longest pause ({result['max_gap_s']} s), s after 30 s before it began:\n"
          + timeline.table(around))
    return result


def test_a_new_root_that_is_not_healthy_rolls_back_and_the_upgrade_run_again_finishes(
        lab: Lab, pair: tuple[Initiator, list[str]], next_root: Path) -> None:
    result = _run(lab, pair, "rolling upgrade with a failed trial",
                  upgrade_lab.scenario(upgrade_lab.upgrade_with_a_failed_trial, next_root))
    assert "its trial boot did not come up healthy" in result["rolled_back_note"]
    assert result["version"] == upgrade_lab.next_version()
    assert result["errors"] == 0 and result["lost"] == 0
