"""`iscsiha apply`'s question before initiators lose something (apply.Approve)."""

from __future__ import annotations

import sys
from collections.abc import Callable
from typing import TextIO

from iscsiha.commands.apply_losses import Loss
from iscsiha.errors import IscsihaError

NOT_CONFIRMED = "losses-not-confirmed"


def loss_lines(losses: tuple[Loss, ...]) -> str:
    return "".join(f"\n  - {loss}" for loss in losses)


def accepted(losses: tuple[Loss, ...]) -> set[str]:
    """The answers that go on: yes, or the target's name when only one target loses."""
    targets = {loss.target for loss in losses}
    return {"yes"} | (targets if len(targets) == 1 else set())


def approve_losses(losses: tuple[Loss, ...], *, is_tty: Callable[[], bool] = sys.stdin.isatty,
                   ask: Callable[[str], str] = input, err: TextIO | None = None) -> None:
    """On a terminal, show the losses and go on only when yes (or the one target's name)
    is typed; without one, refuse: a script says --yes."""
    answers = accepted(losses)
    print(f"iscsiha: this apply takes away what initiators use:{loss_lines(losses)}",
          file=err or sys.stderr, flush=True)
    if not is_tty():
        raise IscsihaError.single(
            NOT_CONFIRMED, "apply", f"{len(losses)} loss(es) listed above",
            "--yes (there is no terminal to ask at)", "was not confirmed; nothing was changed")
    try:
        answer = ask(f"Type {' or '.join(sorted(answers))} to go on: ").strip()
    except EOFError:
        answer = ""
    if answer not in answers:
        raise IscsihaError.single(NOT_CONFIRMED, "apply", answer or None,
                                  " or ".join(sorted(answers)),
                                  "was not confirmed; nothing was changed")
