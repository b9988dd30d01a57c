"""The lab agent inside every guest. Copied into the node's share folder; standard library only.

Runs from the unit that the lab passes on the kernel command line (see uml.py):

    agent.py setup   once per boot, before the network is used: hostname, /etc/hosts,
                     addresses from node.json, offloads off on every lab interface
    agent.py serve   the exec channel: runs each request file dropped in requests/
                     and answers in results/

The share folder is a hostfs mount of a host directory. Files are written to a
temporary name, fsync'ed and renamed, because the guest caches pages and the
host must never read a half-written answer (and vice versa).
"""

from __future__ import annotations

import base64
import contextlib
import ctypes
import fcntl
import json
import os
import shutil
import signal
import socket
import struct
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

SHARE = Path(__file__).resolve().parent  # /run/iscsiha-lab in the guest
POLL_SECONDS = 0.05
GUEST_PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
HOSTS_BEGIN, HOSTS_END = "# BEGIN iscsiha-lab", "# END iscsiha-lab"
# Without these off, TCP between UML nodes crawls (3 Mbit/s with retransmits
# instead of about 1.8 Gbit/s): see shared/lab-notes.md.
OFFLOADS = ("tso", "gso", "sg", "gro")
# The same through the kernel's legacy ethtool ioctls, for images without ethtool(8).
SIOCETHTOOL = 0x8946
ETHTOOL_SET = {"tso": 0x1F, "gso": 0x24, "sg": 0x19, "gro": 0x2C}


def write_atomic(path: Path, data: bytes) -> None:
    # A dot name in the same folder: nobody reads dot names, and rename is atomic there.
    tmp = path.with_name(f".{path.name}.{os.getpid()}.{threading.get_ident()}")
    with open(tmp, "wb") as out:
        out.write(data)
        out.flush()
        os.fsync(out.fileno())
    os.replace(tmp, path)


def run_logged(argv: list[str], log: list[str]) -> bool:
    try:
        proc = subprocess.run(argv, capture_output=True, text=True, timeout=30,
                              env={"PATH": GUEST_PATH}, check=False)
    except (OSError, subprocess.TimeoutExpired) as exc:
        log.append(f"FAILED {' '.join(argv)}: {exc}")
        return False
    status = "ok" if proc.returncode == 0 else f"FAILED (exit {proc.returncode})"
    log.append(f"{status} {' '.join(argv)} {proc.stderr.strip()}".rstrip())
    return proc.returncode == 0


def setup(share: Path) -> int:
    config: dict[str, Any] = json.loads((share / "node.json").read_text())
    log: list[str] = []
    name = str(config["hostname"])
    Path("/etc/hostname").write_text(name + "\n")
    socket.sethostname(name)
    log.append(f"ok hostname {name}")

    hosts = Path("/etc/hosts")
    lines = hosts.read_text().splitlines() if hosts.exists() else ["127.0.0.1 localhost"]
    if HOSTS_BEGIN in lines and HOSTS_END in lines:
        lines = lines[: lines.index(HOSTS_BEGIN)] + lines[lines.index(HOSTS_END) + 1 :]
    # Drop Debian's "127.0.1.1 <hostname>": corosync and pacemaker must resolve
    # the node's own name to its cluster address, not to loopback.
    lines = [line for line in lines if not line.startswith("127.0.1.1")]
    lines += [HOSTS_BEGIN, *(f"{addr} {host}" for host, addr in config["hosts"]), HOSTS_END]
    hosts.write_text("\n".join(lines) + "\n")

    ok = True
    # The lab sets the addresses of its own links only; an appliance's cluster,
    # replication and storage links get theirs from the product (`iscsiha network`).
    static = [i for i in config["interfaces"] if i.get("static", True)]
    write_networkd_files(static, log)
    for iface in config["interfaces"]:
        ifname = str(iface["ifname"])
        ok &= run_logged(["ip", "link", "set", "dev", ifname, "up"], log)
        if iface in static:
            ok &= run_logged(["ip", "address", "replace", str(iface["cidr"]), "dev", ifname],
                             log)
        if shutil.which("ethtool", path=GUEST_PATH):
            offloads = [word for o in OFFLOADS for word in (o, "off")]
            ok &= run_logged(["ethtool", "-K", ifname, *offloads], log)
        else:
            ok &= offloads_off_ioctl(ifname, log)
    write_atomic(share / "setup.json", json.dumps({"ok": ok, "log": log}).encode())
    return 0  # never block boot: the host reads setup.json and reports problems


def write_networkd_files(interfaces: list[dict[str, Any]], log: list[str]) -> None:
    """Tell systemd-networkd, if the image uses it, that the lab's links are static.

    Otherwise an image's catch-all DHCP .network would take the vec* links and
    drop the addresses set below. Written to /run (gone at power off, never in
    the image); networkd starts after network-pre.target, i.e. after this.
    """
    folder = Path("/run/systemd/network")
    folder.mkdir(parents=True, exist_ok=True)
    for iface in interfaces:
        (folder / f"10-iscsiha-lab-{iface['ifname']}.network").write_text(
            "# iscsiha lab: a static address set by the lab agent\n"
            f"[Match]\nName={iface['ifname']}\n\n"
            f"[Network]\nAddress={iface['cidr']}\nLinkLocalAddressing=no\n")
    log.append(f"ok networkd files in {folder}")


def offloads_off_ioctl(ifname: str, log: list[str]) -> bool:
    ok = True
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        for name in OFFLOADS:
            value = ctypes.create_string_buffer(struct.pack("II", ETHTOOL_SET[name], 0))
            ifreq = struct.pack("16sP", ifname.encode(), ctypes.addressof(value)).ljust(40, b"\0")
            try:
                fcntl.ioctl(sock.fileno(), SIOCETHTOOL, ifreq)
            except OSError as exc:
                log.append(f"FAILED ioctl {name} off on {ifname}: {exc}")
                ok = False
    if ok:
        log.append(f"ok ioctl {' '.join(OFFLOADS)} off on {ifname} (no ethtool in the image)")
    return ok


class Server:
    def __init__(self, share: Path) -> None:
        self.share = share
        self.requests, self.running, self.results = (
            share / d for d in ("requests", "running", "results"))
        self.stop = threading.Event()  # for tests; in a guest the agent runs until power off

    def serve(self) -> int:
        for folder in (self.requests, self.running, self.results, self.share / "tmp"):
            folder.mkdir(exist_ok=True)
        # Requests left from before this boot belong to a dead kernel: drop them.
        for folder in (self.requests, self.running):
            for stale in folder.iterdir():
                stale.unlink(missing_ok=True)
        boot_id = Path("/proc/sys/kernel/random/boot_id").read_text().strip()
        write_atomic(self.share / "agent.json",
                     json.dumps({"boot_id": boot_id, "pid": os.getpid()}).encode())
        while not self.stop.is_set():
            for entry in sorted(os.listdir(self.requests)):
                if entry.endswith(".json") and not entry.startswith("."):
                    self.claim(entry)
            time.sleep(POLL_SECONDS)
        return 0

    def claim(self, entry: str) -> None:
        try:
            os.replace(self.requests / entry, self.running / entry)
        except FileNotFoundError:
            return
        threading.Thread(target=self.run, args=(entry,), daemon=True).start()

    def run(self, entry: str) -> None:
        started = time.monotonic()
        result: dict[str, Any]
        try:
            request = json.loads((self.running / entry).read_text())
            result = execute(request)
        except Exception as exc:  # the host must get an answer, whatever went wrong
            result = {"rc": 255, "stdout": "", "stderr": b64(f"lab agent: {exc}\n".encode())}
        result["seconds"] = time.monotonic() - started
        write_atomic(self.results / entry, json.dumps(result).encode())
        (self.running / entry).unlink(missing_ok=True)


def b64(data: bytes) -> str:
    return base64.b64encode(data).decode()


def execute(request: dict[str, Any]) -> dict[str, Any]:
    argv = [str(a) for a in request["argv"]]
    stdin = base64.b64decode(request["stdin"]) if request.get("stdin") is not None else None
    timeout = request.get("timeout")
    env = {"PATH": GUEST_PATH, "LANG": "C.UTF-8", "HOME": "/root", **request.get("env", {})}
    try:
        proc = subprocess.Popen(
            argv, stdin=subprocess.PIPE if stdin is not None else subprocess.DEVNULL,
            stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env, cwd="/",
            start_new_session=True,
        )
    except OSError as exc:
        code = 127 if isinstance(exc, FileNotFoundError) else 126
        return {"rc": code, "stdout": "", "stderr": b64(f"{argv[0]}: {exc.strerror}\n".encode())}
    try:
        out, err = proc.communicate(stdin, timeout=timeout)
        return {"rc": proc.returncode, "stdout": b64(out), "stderr": b64(err)}
    except subprocess.TimeoutExpired:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGKILL)
        out, err = proc.communicate()
        err += f"lab agent: timed out after {timeout} s, killed\n".encode()
        return {"rc": 124, "stdout": b64(out), "stderr": b64(err)}


def main(argv: list[str]) -> int:
    if argv[1:] == ["setup"]:
        return setup(SHARE)
    if argv[1:] == ["serve"]:
        return Server(SHARE).serve()
    print("usage: agent.py setup|serve", file=sys.stderr)
    return 2


if __name__ == "__main__":
    sys.exit(main(sys.argv))
