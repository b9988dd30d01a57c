"""ipmi_sim's chassis_control program: a node's power switch, operated through the supervisor.

    python -m iscsiha_lab.bmc_power SOCKET NODE get power [...]
    python -m iscsiha_lab.bmc_power SOCKET NODE set power 0|1 [reset 1] [boot X] ...

"get" prints one "name:value" line per asked name; "set" prints nothing on
success. Errors go to stdout, as ipmi_sim logs what it reads there.
"""

from __future__ import annotations

import sys
from collections.abc import Sequence
from pathlib import Path

from iscsiha.errors import IscsihaError
from iscsiha_lab import control


def main(argv: Sequence[str] | None = None) -> int:
    args = list(sys.argv[1:] if argv is None else argv)
    if len(args) < 3 or args[2] not in ("get", "set"):
        print("usage: bmc_power SOCKET NODE get NAME... | set NAME VALUE...")
        return 2
    sock, node, op, rest = Path(args[0]), args[1], args[2], args[3:]
    try:
        if op == "get":
            for name in rest:
                if name == "power":
                    answer = control.request(sock, {"op": "power-state", "node": node})
                    print(f"power:{1 if answer['power'] != 'off' else 0}")
                elif name == "boot":
                    print("boot:default")
                else:
                    print(f"cannot get {name}")
                    return 1
            return 0
        pairs = list(zip(rest[::2], rest[1::2], strict=False))
        for name, value in pairs:
            if name == "power":
                control.request(sock, {"op": "power-on" if value == "1" else "power-off",
                                       "node": node})
            elif name == "reset" and value == "1":
                control.request(sock, {"op": "power-off", "node": node})
                control.request(sock, {"op": "power-on", "node": node})
            elif name == "shutdown" and value == "1":
                # A soft-off request: the lab's nodes have no ACPI, so it is a power cut.
                control.request(sock, {"op": "power-off", "node": node})
            # boot device and identify have no meaning in the lab: accepted, ignored.
        return 0
    except IscsihaError as exc:
        print(str(exc))
        return 1


if __name__ == "__main__":
    sys.exit(main())
