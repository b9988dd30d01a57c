"""`iscsiha-lab console NODE`: a terminal on the node's second UML console (a login prompt).

UML gives that console a pseudo-terminal on the host (`con1=pts`) and says which
one in its boot messages; we relay between it and our own terminal. Ctrl-] leaves.
"""

from __future__ import annotations

import os
import re
import select
import sys
import termios
import tty
from pathlib import Path

from iscsiha.errors import IscsihaError

ESCAPE = b"\x1d"  # Ctrl-]
_PTS = re.compile(r"Virtual console 1 assigned device '(/dev/pts/\d+)'")


def find_pts(console_log: Path) -> str:
    """The pts of console 1 in the node's current boot (the last one its log mentions)."""
    try:
        text = console_log.read_text(errors="replace")
    except FileNotFoundError:
        text = ""
    found = _PTS.findall(text)
    if not found or not os.path.exists(found[-1]):
        raise IscsihaError.single(
            "no-console", "console", str(console_log),
            "a powered-on node whose boot log names its console pseudo-terminal",
            "none found (is the node powered on?)")
    return str(found[-1])


def attach(pts: str) -> None:
    fd = os.open(pts, os.O_RDWR | os.O_NOCTTY)
    stdin = sys.stdin.fileno()
    saved = termios.tcgetattr(stdin) if os.isatty(stdin) else None
    print(f"connected to {pts}; Ctrl-] leaves", file=sys.stderr)
    try:
        if saved is not None:
            tty.setraw(stdin)
        os.write(fd, b"\n")  # wake the getty so the prompt shows
        while True:
            ready, _, _ = select.select([fd, stdin], [], [])
            if fd in ready:
                data = os.read(fd, 4096)
                if not data:
                    break
                os.write(sys.stdout.fileno(), data)
            if stdin in ready:
                data = os.read(stdin, 4096)
                if not data or ESCAPE in data:
                    break
                os.write(fd, data)
    except OSError:
        pass  # the node was powered off under us
    finally:
        if saved is not None:
            termios.tcsetattr(stdin, termios.TCSADRAIN, saved)
        os.close(fd)
        print("\r\nconsole closed", file=sys.stderr)
