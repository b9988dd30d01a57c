#!/usr/bin/python3
"""The lab's tiebreaker signer: how `cluster init --tiebreaker-signer` reaches the lab's
qnetd CA from inside a box.

A standard deployment signs over SSH to the qnetd host. The lab's qnetd runs on the
host, in the supervisor's namespaces, with its CA under the run directory, where no
box can log in. So a box drops its request as a file into its share folder (the
hostfs folder of the exec channel) and the supervisor, which looks there twice a
second, answers with qnetd's own certutil. The program a box runs is this file,
copied into the share folder like the exec agent (so it needs nothing of the image's
iscsiha and nothing of the lab's host side):

    /run/iscsiha-lab/signer.py ca            the CA certificate, base64
    /run/iscsiha-lab/signer.py sign CLUSTER  the request (base64) on stdin, the signed
                                             certificate (base64) on stdout
"""

from __future__ import annotations

import base64
import json
import os
import sys
import time
import uuid
from collections.abc import Callable
from pathlib import Path

FOLDER = "tiebreaker"  # in each appliance's share folder
SCRIPT = "signer.py"  # this file, in each appliance's share folder
GUEST_SHARE = "/run/iscsiha-lab"  # uml.GUEST_SHARE_MOUNT, not imported: see above
PROGRAM = f"{GUEST_SHARE}/{SCRIPT}"  # one word: console parameters have no spaces
CA_FILE = "qnetd-cacert.crt"
WAIT_SECONDS = 150.0


def _write_atomic(path: Path, data: bytes) -> None:
    part = path.with_name(path.name + ".part")
    part.write_bytes(data)
    os.replace(part, path)


# -- host side (the supervisor) -------------------------------------------------------------

def publish_ca(folder: Path, ca: bytes) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    _write_atomic(folder / CA_FILE, ca)


def answer(folder: Path, sign: Callable[[str, bytes], bytes]) -> int:
    """Answer every request waiting in ``folder``; how many were answered."""
    count = 0
    for request in sorted(folder.glob("*.request")):
        try:
            data = json.loads(request.read_text())
            cert = sign(str(data["cluster"]), base64.b64decode(str(data["request"])))
            reply = {"certificate": base64.b64encode(cert).decode()}
        except Exception as exc:  # every failure goes back to the box, which waits for it
            reply = {"error": f"{type(exc).__name__}: {exc}"}
        _write_atomic(request.with_suffix(".answer"), json.dumps(reply).encode())
        request.unlink(missing_ok=True)
        count += 1
    return count


# -- guest side (the program `cluster init` runs) ---------------------------------------------

def request_signature(folder: Path, cluster: str, request: bytes,
                      wait: float = WAIT_SECONDS) -> bytes:
    name = uuid.uuid4().hex
    _write_atomic(folder / f"{name}.request", json.dumps(
        {"cluster": cluster, "request": base64.b64encode(request).decode()}).encode())
    reply_path = folder / f"{name}.answer"
    deadline = time.monotonic() + wait
    while not reply_path.exists():
        if time.monotonic() > deadline:
            (folder / f"{name}.request").unlink(missing_ok=True)
            raise TimeoutError(f"no answer in {folder} within {wait:.0f} s: is the lab's "
                               "supervisor running?")
        time.sleep(0.3)
    reply = json.loads(reply_path.read_text())
    reply_path.unlink(missing_ok=True)
    if "error" in reply:
        raise RuntimeError(f"the lab's qnetd CA refused: {reply['error']}")
    return base64.b64decode(reply["certificate"])


def main(argv: list[str] | None = None, folder: Path | None = None) -> int:
    folder = folder or Path(__file__).resolve().parent / FOLDER
    args = sys.argv[1:] if argv is None else argv
    try:
        if args == ["ca"]:
            out = (folder / CA_FILE).read_bytes()
        elif len(args) == 2 and args[0] == "sign":
            out = request_signature(folder, args[1], base64.b64decode(sys.stdin.read()))
        else:
            print("usage: signer ca | signer sign CLUSTER", file=sys.stderr)
            return 2
    except (OSError, ValueError, TimeoutError, RuntimeError) as exc:
        print(f"lab signer: {exc}", file=sys.stderr)
        return 1
    print(base64.b64encode(out).decode())
    return 0


if __name__ == "__main__":
    sys.exit(main())
