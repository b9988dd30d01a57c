"""`iscsiha-alert`: the appliance's one alert sender.

    iscsiha-alert                              Pacemaker's alert agent (CRM_alert_*)
    iscsiha-alert event KIND [KEY=VALUE...]    an event from outside Pacemaker (DRBD's
                                               handlers, the verify timer)
    iscsiha-alert check-space                  the space timer: volume groups' fill

Every event this box reports goes to its journal and to each recipient of the alert
settings. Nothing here raises to the caller: bad input or a recipient that failed
ends in a message on stderr (Pacemaker and DRBD log it) and exit status 1; bad usage
is 2.

Pacemaker runs this for every operation result of every resource, dozens at once in a
failover, on the box doing the failover. Most report nothing (a successful notify, a
probe), so this module decides that with the light parts only (the environment's
checks and the each-once rule's first test) and imports the senders, executors and
settings (iscsiha.alerts.run) only when there may be something to send.
"""

from __future__ import annotations

import os
import socket
import sys
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING

from iscsiha.alerts import pacemaker
from iscsiha.alerts.events import clean

if TYPE_CHECKING:
    from iscsiha.alerts.run import World

PROG = "iscsiha-alert"
USAGE = (f"usage: {PROG}                          (run by Pacemaker, CRM_alert_* set)\n"
         f"       {PROG} event KIND [KEY=VALUE...]\n"
         f"       {PROG} check-space")


def main(argv: Sequence[str] | None = None, env: Mapping[str, str] | None = None,
         world: World | None = None) -> int:
    args = list(sys.argv[1:] if argv is None else argv)
    env = os.environ if env is None else env
    try:
        if not args:
            alert = pacemaker.parse_env(env)
            name = world.hostname() if world is not None else socket.gethostname()
            if not pacemaker.may_report(alert, name):
                return 0
            from iscsiha.alerts import run  # the heavy part, only when needed (see above)
            return run.from_pacemaker(alert, world or run.World())
        if (args[0] == "event" and len(args) >= 2) or args == ["check-space"]:
            from iscsiha.alerts import run
            world = world or run.World()
            if args[0] == "event":
                return run.from_command(args[1], args[2:], world)
            return run.check_space(world)
    except pacemaker.AlertInputError as exc:
        print(f"{PROG}: {exc}", file=sys.stderr)
        return 1
    except Exception as exc:  # the agent's promise: a message, never a traceback
        print(f"{PROG}: internal error: {type(exc).__name__}: {clean(str(exc), 300)}",
              file=sys.stderr)
        return 1
    print(USAGE, file=sys.stderr)
    return 2


if __name__ == "__main__":
    sys.exit(main())
