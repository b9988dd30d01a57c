"""The lab supervisor: the one long-running process that owns a running lab.

Started by `iscsiha-lab up` as

    unshare --net --mount --propagation private -- python -m iscsiha_lab.supervisor STATE_DIR

so it lives in a network namespace and a mount namespace of its own. Everything
of the lab hangs off it: the bridges and taps, the runner root's mounts, qnetd,
the BMC simulators and the UML processes. When it exits (after `down`, or
killed) both namespaces disappear with their last process, so no interface,
address or mount can outlive the lab.

It is a child subreaper: every process of the lab, including the UML processes
started when a BMC powers a node on, is its descendant and is reaped here, even
on machines whose pid 1 never reaps orphans.

It serves control requests (power, freeze, links, qnetd status) on a Unix
socket in the run directory; see control.py.

Every boot of an appliance node goes through the boot loader's stand-in
(boot_loader.py): a power on, a BMC's power cycle (off, then on) and a reboot the
guest does itself (UML exits with uml.REBOOT_EXIT, and the reaper boots it again).
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import re
import selectors
import signal
import socket
import sys
import time
from collections.abc import Callable
from pathlib import Path
from types import FrameType
from typing import Any

import iscsiha
import iscsiha_lab
from iscsiha.errors import IscsihaError
from iscsiha.executors.runner import Runner
from iscsiha_lab import boot_disk, boot_loader, netns, processes, qnetd, signer
from iscsiha_lab.bmc import ipmi_sim_argv
from iscsiha_lab.control import error_answer
from iscsiha_lab.paths import GUEST_INITIATOR_IMAGE, GUEST_LAB_DIR, LabPaths
from iscsiha_lab.processes import ProcessId
from iscsiha_lab.state import LabState, load_state, write_json
from iscsiha_lab.tools import MOUNT
from iscsiha_lab.topology import NodeRole, Topology, default_topology
from iscsiha_lab.uml import BOOT_DISK, REBOOT_EXIT, REBOOT_PROGRAM, reboot_program, uml_argv

log = logging.getLogger("iscsiha_lab.supervisor")

UML_ENV = {"PATH": "/usr/sbin:/usr/bin:/sbin:/bin", "TMPDIR": "/tmp", "HOME": "/root"}
PER_BOOT_FILES = ("agent.json", "setup.json")
PER_BOOT_DIRS = ("requests", "running", "results", "tmp")
# Extra kernel words for a node's next trial boot (trial-words): a few plain words, and
# none that would override what the boot loader's stand-in chose.
_KERNEL_WORD = re.compile(r"[A-Za-z0-9][A-Za-z0-9._:=@/+-]{0,199}")
_RESERVED_WORDS = ("root=", "iscsiha.slot=", "ubd", "mem=", "iscsiha_lab.")
TRIAL_WORDS_MAX = 8


def package_env() -> dict[str, str]:
    """Environment for our own Python entry points started by other programs (ipmi_sim)."""
    roots = [str(Path(module.__file__ or "").resolve().parents[1])
             for module in (iscsiha_lab, iscsiha)]
    path = os.environ.get("PYTHONPATH")
    return {**os.environ, "PYTHONPATH": os.pathsep.join([*roots, *([path] if path else [])])}


class Supervisor:
    def __init__(self, paths: LabPaths, state: LabState, topology: Topology) -> None:
        self.paths = paths
        self.state = state
        self.topology = topology
        self.runner = Runner()
        self.nodes: dict[str, ProcessId | None] = {n.name: None for n in topology.nodes}
        self.services: dict[str, ProcessId] = {}
        self.stopping = False
        self.listener: socket.socket | None = None
        # The UUID of the root every boot disk is flashed with (grub-ab.cfg's @ROOT_UUID@).
        self.flashed_uuid = boot_disk.root_uuid(Path(state.image))
        self.trial_words: dict[str, list[str]] = {}

    # -- life cycle ------------------------------------------------------------------------------

    def run(self) -> int:
        processes.become_subreaper()
        for sig in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP):
            signal.signal(sig, self._on_signal)
        try:
            self._mount_runner()
            netns.create_networks(self.runner, self.topology)
            self._start_qnetd()
            self._start_bmcs()
            for node in self.topology.nodes:
                self.power_on(node.name)
            self._serve()
            return 0
        except Exception:
            log.exception("supervisor failed")
            return 1
        finally:
            self._teardown()

    def _on_signal(self, signum: int, frame: FrameType | None) -> None:
        log.info("signal %d: stopping the lab", signum)
        self.stopping = True

    def _mount_runner(self) -> None:
        """Give the runner root what UML needs, in our private mount namespace only."""
        root = Path(self.state.runner)
        mount = MOUNT.path
        self.runner.run([mount, "--rbind", "/dev", str(root / "dev")])
        self.runner.run([mount, "-t", "proc", "proc", str(root / "proc")])
        self.runner.run([mount, "-t", "tmpfs", "-o", "mode=1777", "tmpfs", str(root / "tmp")])
        self.runner.run([mount, "-t", "tmpfs", "-o", "mode=0755", "tmpfs", str(root / "mnt")])
        reboot = root / REBOOT_PROGRAM.lstrip("/")
        reboot.write_text(reboot_program())
        reboot.chmod(0o755)
        inside = root / GUEST_LAB_DIR.lstrip("/")
        inside.mkdir()
        self.runner.run([mount, "--bind", str(self.paths.root), str(inside)])
        where = root / GUEST_INITIATOR_IMAGE.lstrip("/")
        where.touch()
        # Read-only: the initiator runs on a copy-on-write file over it. (The appliance
        # nodes boot their own disks, made from the lab root by boot_disk.py.)
        self.runner.run([mount, "--bind", "-o", "ro", self.state.initiator_image, str(where)])
        self.paths.qnetd_dir.mkdir(parents=True, exist_ok=True)
        self.runner.run([mount, "--bind", str(self.paths.qnetd_dir), str(qnetd.QNETD_CONFIG_DIR)])

    def _start_qnetd(self) -> None:
        qnetd.init_ca(self.runner, self.paths)
        ca = qnetd.ca_certificate(self.paths).read_bytes()
        for node in self.topology.appliances:
            signer.publish_ca(self.paths.share_dir(node.name) / signer.FOLDER, ca)
        self.services["qnetd"] = processes.spawn(
            qnetd.qnetd_argv(self.paths, self.topology), self.paths.qnetd_dir / "qnetd.log")
        self._write_services()

    def _start_bmcs(self) -> None:
        for node in self.topology.appliances:
            self._start_bmc(node.name)

    def _start_bmc(self, name: str) -> None:
        node = self.topology.node(name)
        folder = self.paths.bmc_dir(node.name)
        (folder / "state").mkdir(parents=True, exist_ok=True)
        self.services[f"bmc-{node.name}"] = processes.spawn(
            ipmi_sim_argv(self.paths, node), folder / "ipmi_sim.log", env=package_env())
        self._write_services()

    def bmc_power(self, name: str, on: bool) -> dict[str, Any]:
        """A node's BMC loses power (its simulator stopped, by its pid) or gets it back."""
        self.topology.node(name)
        proc = self.services.get(f"bmc-{name}")
        running = proc is not None and processes.is_running(proc)
        if on and not running:
            self._start_bmc(name)
            log.info("%s: BMC powered on", name)
        elif not on and proc is not None:
            # Gone from the services, so the supervisor does not report it lost.
            del self.services[f"bmc-{name}"]
            self._write_services()
            processes.signal_group(proc, signal.SIGKILL)
            processes.wait_gone(proc, 10.0, reap=True)
            log.info("%s: BMC powered off", name)
        return {"bmc": "on" if on else "off", "changed": on != running}

    def _write_services(self) -> None:
        write_json(self.paths.root / "services.json",
                   {name: proc.to_json() for name, proc in self.services.items()})

    def _serve(self) -> None:
        sock_path = self.paths.control_socket
        sock_path.unlink(missing_ok=True)
        listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        listener.bind(str(sock_path))
        os.chmod(sock_path, 0o600)
        listener.listen(16)
        self.listener = listener
        selector = selectors.DefaultSelector()
        selector.register(listener, selectors.EVENT_READ)
        log.info("lab running; serving %s", sock_path)
        while not self.stopping:
            for _key, _events in selector.select(timeout=0.5):
                conn, _ = listener.accept()
                with conn:
                    self._handle(conn)
            self._reap()
            self._check_services()
            self._answer_signing_requests()

    def _answer_signing_requests(self) -> None:
        """Boxes running `cluster init --tiebreaker-signer` (signer.py) wait for these."""
        for node in self.topology.appliances:
            folder = self.paths.share_dir(node.name) / signer.FOLDER
            if signer.answer(folder, lambda cluster, request: qnetd.sign(
                    self.runner, self.paths, cluster, request)):
                log.info("%s: signed a qdevice certificate request", node.name)

    def _teardown(self) -> None:
        log.info("tearing down")
        for name in self.nodes:
            try:
                self.power_off(name)
            except Exception:
                log.exception("powering off %s", name)
        for name, proc in self.services.items():
            processes.stop(proc, grace=3.0, group=True, reap=True)
            log.info("stopped %s (pid %d)", name, proc.pid)
        self._reap()
        if self.listener is not None:
            self.listener.close()
        self.paths.control_socket.unlink(missing_ok=True)
        (self.paths.root / "services.json").unlink(missing_ok=True)
        log.info("lab down")

    # -- processes -------------------------------------------------------------------------------

    def _reap(self) -> None:
        rebooting = []
        for pid, status in processes.reap_children():
            for name, proc in self.nodes.items():
                if proc is not None and proc.pid == pid:
                    log.info("%s: UML process %d ended (%s)", name, pid, _describe(status))
                    self.nodes[name] = None
                    self.paths.power_file(name).unlink(missing_ok=True)
                    if os.WIFEXITED(status) and os.WEXITSTATUS(status) == REBOOT_EXIT:
                        rebooting.append((name, pid))
        for name, pid in rebooting:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(pid, signal.SIGKILL)  # anything of that boot still in its group
            with self.paths.console_log(name).open("a") as out:
                out.write(f"\n--- iscsiha-lab: the guest rebooted at "
                          f"{time.strftime('%F %T')} ---\n")
            if self.stopping:
                continue
            log.info("%s: the guest rebooted: booting it again", name)
            try:
                self.power_on(name)
            except Exception:
                log.exception("%s: booting again after its reboot failed", name)

    def _check_services(self) -> None:
        for name, proc in self.services.items():
            if not processes.is_running(proc):
                log.error("%s (pid %d) is gone; see its log", name, proc.pid)

    def _running(self, name: str) -> ProcessId | None:
        proc = self.nodes[name]
        return proc if proc is not None and processes.is_running(proc) else None

    def power_on(self, name: str) -> dict[str, Any]:
        node = self.topology.node(name)
        if (proc := self._running(name)) is not None:
            return {"power": "on", "pid": proc.pid, "changed": False}
        share = self.paths.share_dir(name)
        for file in PER_BOOT_FILES:
            (share / file).unlink(missing_ok=True)
        for folder in PER_BOOT_DIRS:
            (share / folder).mkdir(parents=True, exist_ok=True)
            for stale in (share / folder).iterdir():
                stale.unlink(missing_ok=True)
        console = self.paths.console_log(name)
        with console.open("a") as out:
            out.write(f"\n--- iscsiha-lab: power on at {time.strftime('%F %T')} ---\n")
        words = self._boot_words(name) if node.role is NodeRole.APPLIANCE else None
        proc = processes.spawn(
            uml_argv(self.topology, self.paths, node, self.state.runner, words),
            console, env=UML_ENV)
        self.nodes[name] = proc
        write_json(self.paths.power_file(name), {**proc.to_json(), "since": time.time()})
        log.info("%s: powered on (UML pid %d)", name, proc.pid)
        return {"power": "on", "pid": proc.pid, "changed": True}

    def _boot_words(self, name: str) -> list[str]:
        """The boot loader's stand-in: this boot's root and slot, logged on both sides."""
        boot = boot_loader.choose_boot(self.runner, self.paths.node_dir(name) / BOOT_DISK,
                                       self.flashed_uuid)
        words = boot.kernel_words()
        extra = self.trial_words.pop(name, []) if boot.choice.trial else []
        lines = [*boot.notes, boot.choice.line, f"kernel: {' '.join(words)}"]
        if extra:
            lines.append(f"trial words (lab fault, this boot only): {' '.join(extra)}")
        with self.paths.console_log(name).open("a") as out:
            out.writelines(f"--- iscsiha-lab: {line} ---\n" for line in lines)
        log.info("%s: boot: %s, %s%s", name, boot.choice.summary, " ".join(words),
                 f" + {' '.join(extra)}" if extra else "")
        return [*words, *extra]

    def set_trial_words(self, name: str, words: object) -> dict[str, Any]:
        """The node's next trial boot (only a trial's) gets these kernel words, then they go."""
        node = self.topology.node(name)
        if node.role is not NodeRole.APPLIANCE:
            raise IscsihaError.single("not-an-appliance", "node", name,
                                      "an appliance node (only they boot A/B slots)")
        if not isinstance(words, list) or len(words) > TRIAL_WORDS_MAX or not all(
                isinstance(w, str) and _KERNEL_WORD.fullmatch(w)
                and not w.startswith(_RESERVED_WORDS) for w in words):
            raise IscsihaError.single(
                "bad-kernel-words", "words", str(words)[:200],
                f"at most {TRIAL_WORDS_MAX} kernel words of letters, digits and ._:=@/+-, "
                f"none starting {', '.join(_RESERVED_WORDS)} (the lab sets those)")
        if words:
            self.trial_words[name] = list(words)
        else:
            self.trial_words.pop(name, None)
        log.info("%s: next trial boot's extra words: %s", name, " ".join(words) or "none")
        return {"trial_words": list(words)}

    def power_off(self, name: str) -> dict[str, Any]:
        """A power cut: SIGKILL to the UML process group, no shutdown inside the guest."""
        self.topology.node(name)
        proc = self.nodes.get(name)
        if proc is None or not processes.is_running(proc):
            self._reap()
            return {"power": "off", "changed": False}
        processes.signal_group(proc, signal.SIGKILL)
        processes.wait_gone(proc, 10.0, reap=False)
        deadline = time.monotonic() + 10.0
        while self.nodes.get(name) is not None and time.monotonic() < deadline:
            self._reap()
            time.sleep(0.02)
        for file in PER_BOOT_FILES:  # the agent of that boot is gone
            (self.paths.share_dir(name) / file).unlink(missing_ok=True)
        with self.paths.console_log(name).open("a") as out:
            out.write(f"\n--- iscsiha-lab: power cut at {time.strftime('%F %T')} ---\n")
        log.info("%s: powered off", name)
        return {"power": "off", "changed": True}

    def wipe(self, name: str) -> dict[str, Any]:
        """A powered-off box's disks as a new box's: an appliance's boot disk made anew
        (root A as flashed and good; an initiator's copy on write dropped), the data
        disk all zeros."""
        node = self.topology.node(name)
        if self._running(name) is not None:
            raise IscsihaError.single("node-on", "node", name, "a powered-off node",
                                      "is running: power it off first")
        node_dir = self.paths.node_dir(name)
        if node.role is NodeRole.APPLIANCE:  # a boot disk as flashed: root A, good
            seconds = boot_disk.make(self.runner, node_dir / BOOT_DISK, Path(self.state.image))
            log.info("%s: boot disk made anew in %.1f s", name, seconds)
        else:
            (node_dir / "root.cow").unlink(missing_ok=True)  # UML makes a new one at boot
        if node.data_disk_mib:
            with (node_dir / "data.img").open("r+b") as disk:
                disk.truncate(0)
                disk.truncate(node.data_disk_mib * 1024 * 1024)  # sparse zeros
        log.info("%s: disks wiped", name)
        return {"power": "off", "wiped": True}

    def _signal_node(self, name: str, sig: signal.Signals) -> dict[str, Any]:
        self.topology.node(name)
        proc = self._running(name)
        if proc is None:
            raise IscsihaError.single("node-off", "node", name, "a powered-on node",
                                      "is powered off")
        # Only the UML kernel process: its guest processes (host children under
        # ptrace) then stop at their next trap; stopping them directly would
        # confuse UML's ptrace bookkeeping.
        processes.signal_process(proc, sig)
        return self._power_state(name)

    def _power_state(self, name: str) -> dict[str, Any]:
        self.topology.node(name)
        proc = self._running(name)
        if proc is None:
            return {"power": "off"}
        return {"power": "frozen" if processes.is_stopped(proc) else "on", "pid": proc.pid}

    # -- control requests ------------------------------------------------------------------------

    def _handle(self, conn: socket.socket) -> None:
        conn.settimeout(10.0)
        data = b""
        try:
            while chunk := conn.recv(65536):
                data += chunk
            req = json.loads(data or b"{}")
            answer = {"ok": True, **self._dispatch(req)}
        except IscsihaError as exc:
            answer = error_answer(exc)
        except Exception as exc:
            log.exception("request %r failed", data[:200])
            answer = error_answer(IscsihaError.single(
                "supervisor-error", "request", data[:200].decode(errors="replace"),
                "a valid lab request", str(exc)))
        try:
            conn.sendall(json.dumps(answer).encode())
        except OSError:
            log.warning("client went away before its answer")

    def _dispatch(self, req: dict[str, Any]) -> dict[str, Any]:
        op = str(req.get("op"))
        node = str(req.get("node", ""))
        handlers: dict[str, Callable[[], dict[str, Any]]] = {
            "ping": lambda: {"pid": os.getpid()},
            "status": self._status,
            "power-on": lambda: self.power_on(node),
            "power-off": lambda: self.power_off(node),
            "power-state": lambda: self._power_state(node),
            "wipe": lambda: self.wipe(node),
            "trial-words": lambda: self.set_trial_words(node, req.get("words")),
            "freeze": lambda: self._signal_node(node, signal.SIGSTOP),
            "thaw": lambda: self._signal_node(node, signal.SIGCONT),
            "bmc-off": lambda: self.bmc_power(node, on=False),
            "bmc-on": lambda: self.bmc_power(node, on=True),
            "cut": lambda: self._links(str(req.get("link")), req.get("node"), cut=True),
            "heal": lambda: self._links(str(req.get("link")), req.get("node"), cut=False),
            "qnetd-status": lambda: {"text": self.runner.run(
                qnetd.status_argv(self.paths), check=False).stdout},
            "shutdown": self._shutdown,
        }
        if op not in handlers:
            raise IscsihaError.single("unknown-request", "op", op, ", ".join(sorted(handlers)))
        return handlers[op]()

    def _shutdown(self) -> dict[str, Any]:
        self.stopping = True
        return {"stopping": True}

    def _status(self) -> dict[str, Any]:
        taps = netns.tap_states(self.runner)
        return {
            "supervisor": os.getpid(),
            "nodes": {name: self._power_state(name) for name in self.nodes},
            "services": {name: {"pid": p.pid, "running": processes.is_running(p)}
                         for name, p in self.services.items()},
            "taps": {name: {"bridge": t.bridge, "up": t.up} for name, t in taps.items()},
        }

    def _links(self, link: str, node_name: object, cut: bool) -> dict[str, Any]:
        network = self.topology.network(link)
        if node_name is None:
            nodes = [n for n in self.topology.nodes if link in n.networks]
        else:
            nodes = [self.topology.node(str(node_name))]
        changed = []
        for node in nodes:
            tap = self.topology.tap(node, link)  # raises: node not on that network
            if cut:
                netns.cut(self.runner, tap)
            else:
                netns.heal(self.runner, tap, network.bridge)
            changed.append(tap)
        log.info("%s %s: %s", "cut" if cut else "healed", link, ", ".join(changed))
        return {"taps": changed}


def _describe(status: int) -> str:
    if os.WIFSIGNALED(status):
        return f"killed by signal {os.WTERMSIG(status)}"
    return f"exit code {os.waitstatus_to_exitcode(status)}"


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    logging.basicConfig(stream=sys.stdout, level=logging.INFO,
                        format="%(asctime)s %(levelname)s %(message)s")
    paths = LabPaths(Path(args[0]))
    state = load_state(paths.state_file)
    if state is None:
        log.error("no state file in %s", paths.root)
        return 1
    return Supervisor(paths, state, default_topology()).run()


if __name__ == "__main__":
    sys.exit(main())
