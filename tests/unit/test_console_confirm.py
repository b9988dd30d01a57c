"""The console asks before a change takes away what initiators use (apply's question,
answered y/N as the console's other questions; confirm=yes on the line answers it)."""

from __future__ import annotations

from pathlib import Path

import pytest

from iscsiha.commands.apply_losses import Loss
from tests.unit.console_fakes import Harness

LOSS = Loss("vm", "allowed initiator iqn.1993-08.org.debian:01:hv1 REMOVED")
DELETE_ACL = "/targets/vm/acls delete iqn.1993-08.org.debian:01:hv1"


@pytest.fixture
def h(tmp_path: Path) -> Harness:
    harness = Harness(tmp_path)
    harness.backend.losses = (LOSS,)
    return harness


def test_a_loss_refused_at_the_question_changes_nothing(h: Harness) -> None:
    h.answers = [False]
    assert h.run(DELETE_ACL) == 1
    assert h.unchanged()
    assert str(LOSS) in h.questions[0]
    assert "not-confirmed" in h.err.getvalue()


def test_a_loss_answered_yes_is_applied_and_saved(h: Harness) -> None:
    h.answers = [True]
    assert h.run(DELETE_ACL) == 0
    assert len(h.backend.applied) == 1 and len(h.backend.saved) == 1
    assert "iqn.1993-08.org.debian:01:hv1" not in h.backend.saved[0]


def test_confirm_yes_on_a_command_without_that_parameter_answers_it(h: Harness) -> None:
    assert h.run(f"{DELETE_ACL} confirm=yes") == 0
    assert h.questions == [] and len(h.backend.applied) == 1


def test_confirm_yes_answers_set_too(h: Harness) -> None:
    assert h.run("/targets/vm set target iqn=iqn.2026-11.com.example:san.vm2 confirm=yes") == 0
    assert h.questions == [] and len(h.backend.applied) == 1


def test_a_bad_confirm_value_is_refused_before_anything(h: Harness) -> None:
    assert h.run(f"{DELETE_ACL} confirm=maybe") == 1
    assert h.unchanged() and h.questions == []


def test_a_delete_that_already_asked_does_not_ask_again(h: Harness) -> None:
    h.answers = [True]
    assert h.run("/targets/vm/luns delete lun0") == 0
    assert len(h.questions) == 1 and len(h.backend.applied) == 1


def test_confirmation_does_not_carry_over_to_the_next_line(h: Harness) -> None:
    assert h.run(f"{DELETE_ACL} confirm=yes") == 0
    assert h.run("/volumes create name=extra size=1G") == 1  # the fake's loss again
    assert len(h.questions) == 1 and len(h.backend.applied) == 1


def test_a_harmless_change_does_not_ask(h: Harness) -> None:
    h.backend.losses = ()
    assert h.run("/volumes create name=extra size=1G") == 0
    assert h.questions == []
