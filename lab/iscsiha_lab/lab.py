"""The lab's operations for the CLI and the pytest fixture: up, down, status, exec, power, links.

`up` prepares the run directory, starts the supervisor (see supervisor.py),
waits until every node has finished booting, then forms the cluster. Whatever
fails or is interrupted on the way is torn down again before the error is
raised. `down` asks the supervisor to stop everything; if the supervisor is gone
it stops the recorded processes itself, by pid.
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from iscsiha.errors import IscsihaError, Secret
from iscsiha.executors.runner import Runner
from iscsiha_lab import bmc, boot_disk, cluster, control, initiator_root, processes, signer, tools
from iscsiha_lab.guest import GuestChannel, GuestResult
from iscsiha_lab.paths import LabImages, LabPaths
from iscsiha_lab.processes import ProcessId
from iscsiha_lab.state import LabState, load_state, read_json, read_process, write_json
from iscsiha_lab.supervisor import package_env
from iscsiha_lab.topology import NodeRole, Topology, default_topology
from iscsiha_lab.uml import BOOT_DISK

Progress = Callable[[str], None]
AGENT_SOURCE = Path(__file__).with_name("agent.py")
BOOT_TIMEOUT = 300.0
CLUSTER_TIMEOUT = 180.0


def _quiet(message: str) -> None:
    pass


class Lab:
    def __init__(self, paths: LabPaths, topology: Topology | None = None) -> None:
        self.paths = paths
        self.topology = topology or default_topology()
        # Set when this process started the supervisor: then `down` reaps it too.
        self._supervisor_popen: subprocess.Popen[bytes] | None = None
        self._runner = Runner()

    # -- state -----------------------------------------------------------------------------------

    def state(self) -> LabState | None:
        return load_state(self.paths.state_file)

    def supervisor(self) -> ProcessId | None:
        state = self.state()
        if state is None or state.supervisor is None:
            return None
        return state.supervisor if processes.is_running(state.supervisor) else None

    def require_running(self) -> LabState:
        state = self.state()
        if state is None or state.supervisor is None or not processes.is_running(
                state.supervisor):
            raise IscsihaError.single(
                "lab-not-running", "state-dir", str(self.paths.root),
                "the run directory of a lab started with `iscsiha-lab up`",
                "no lab is running there")
        return state

    def request(self, payload: dict[str, Any], timeout: float = 60.0) -> dict[str, Any]:
        self.require_running()
        return control.request(self.paths.control_socket, payload, timeout=timeout)

    # -- up --------------------------------------------------------------------------------------

    def preflight(self, images: LabImages) -> list[IscsihaError]:
        problems: list[IscsihaError] = []
        if os.geteuid() != 0:
            problems.append(IscsihaError.single(
                "not-root", "user", os.geteuid(), "root (uid 0)",
                "the lab creates namespaces, taps and mounts"))
        if not os.path.exists("/dev/net/tun"):
            problems.append(IscsihaError.single(
                "no-tun", "device", "/dev/net/tun", "a tun/tap device node",
                "the lab's networks are tap devices"))
        for tool in tools.missing():
            problems.append(IscsihaError.single(
                "command-missing", "command", tool.path,
                f"installed: apt-get install {tool.package}"))
        problems += images.problems()
        return problems

    def up(
        self,
        images: LabImages,
        progress: Progress = _quiet,
        form_cluster: bool = True,
        boot_timeout: float = BOOT_TIMEOUT,
    ) -> LabState:
        # A running lab first: whatever else is wrong, that is what the user must know.
        if (running := self.supervisor()) is not None:
            raise IscsihaError.single(
                "lab-running", "state-dir", str(self.paths.root),
                "a run directory without a running lab: `iscsiha-lab down` first, or another "
                "--state-dir (only one lab at a time fits this machine)",
                f"a lab is already running there (supervisor pid {running.pid}); left untouched")
        root = self.paths.root
        if root.exists() and any(root.iterdir()) and not self.paths.state_file.exists():
            # up wipes the run directory: never one that the lab did not make.
            raise IscsihaError.single(
                "not-a-lab-directory", "state-dir", str(root),
                "an empty or missing directory, or one an earlier `up` made",
                "holds files but no state.json")
        problems = self.preflight(images)
        if problems:
            raise IscsihaError([r for p in problems for r in p.reports])
        if (previous := self.state()) is not None and previous.phase != "down":
            progress("cleaning up what a previous lab left")
            self.down(progress)
        kernel = images.kernel_version()
        initiator = images.initiator_image or initiator_root.build(images.runner, kernel, progress)
        state = LabState(image=str(images.image), runner=str(images.runner),
                         initiator_image=str(initiator), kernel=kernel)
        try:
            self._prepare(state)
            started = time.monotonic()
            self._start_supervisor(state, progress)
            state.phase = "booting"
            write_json(self.paths.state_file, state.to_json())
            boot = self.wait_booted([n.name for n in self.topology.nodes], boot_timeout, progress)
            state.timings["up_seconds"] = round(time.monotonic() - started, 2)
            state.timings.update({f"boot_{k}_seconds": round(v, 2) for k, v in boot.items()})
            if form_cluster:
                state.phase = "cluster"
                write_json(self.paths.state_file, state.to_json())
                t0 = time.monotonic()
                cluster.form(self, progress)
                cluster.wait_formed(self, CLUSTER_TIMEOUT, progress)
                state.timings["cluster_seconds"] = round(time.monotonic() - t0, 2)
            state.phase = "ready"
            write_json(self.paths.state_file, state.to_json())
            progress(f"lab ready: nodes up in {state.timings['up_seconds']:.1f} s")
            return state
        except BaseException as exc:  # includes Ctrl-C: nothing may stay behind
            progress(f"up failed ({type(exc).__name__}); tearing down")
            self.down(progress)
            raise

    def _prepare(self, state: LabState) -> None:
        root = self.paths.root
        if root.exists():
            shutil.rmtree(root)
        root.mkdir(parents=True, mode=0o700)
        os.chmod(root, 0o700)  # secrets, keys and disks live here
        self.paths.secrets.mkdir(mode=0o700)
        password = bmc.new_password()
        self.paths.bmc_password_file.write_text(password + "\n")
        os.chmod(self.paths.bmc_password_file, 0o600)
        for node in self.topology.nodes:
            node_dir = self.paths.node_dir(node.name)
            share = self.paths.share_dir(node.name)
            share.mkdir(parents=True)
            if node.data_disk_mib:
                with (node_dir / "data.img").open("wb") as disk:
                    disk.truncate(node.data_disk_mib * 1024 * 1024)  # sparse
            shutil.copyfile(AGENT_SOURCE, share / "agent.py")
            if node.role is NodeRole.APPLIANCE:
                shutil.copyfile(signer.__file__, share / signer.SCRIPT)
                os.chmod(share / signer.SCRIPT, 0o755)
            product = self.topology.product_interfaces(node)
            interfaces = [{"ifname": i.ifname, "cidr": i.cidr, "network": i.network.name,
                           "static": i not in product}
                          for i in self.topology.interfaces(node)]
            hosts = [(name, str(addr)) for name, addr in self.topology.hosts_entries()]
            write_json(share / "node.json",
                       {"hostname": node.name, "interfaces": interfaces, "hosts": hosts}, 0o644)
        power = [sys.executable, "-m", "iscsiha_lab.bmc_power", str(self.paths.control_socket)]
        for node in self.topology.appliances:
            folder = self.paths.bmc_dir(node.name)
            folder.mkdir(parents=True)
            conf = bmc.lan_conf(self.topology, node, password, [*power, node.name])
            (folder / "lan.conf").write_text(conf)
            os.chmod(folder / "lan.conf", 0o600)
            (folder / "bmc.emu").write_text(bmc.EMU_COMMANDS)
        self._pin_inputs(state)
        for node in self.topology.appliances:
            seconds = boot_disk.make(self._runner, self.paths.node_dir(node.name) / BOOT_DISK,
                                     Path(state.image))
            state.timings[f"boot_disk_{node.name}_seconds"] = round(seconds, 2)
        write_json(self.paths.state_file, state.to_json())

    def _pin_inputs(self, state: LabState) -> None:
        """Keep our own references to the images and the runner for the lab's lifetime.

        `image/build` replaces its outputs (rm and rebuild) while a lab may be
        running; a deleted runner directory would take the supervisor's mounts
        with it. Hard links (a hard-linked copy of the runner tree) pin the very
        files the lab started with, at no cost. Across filesystems the runner is
        copied and the images are used in place.
        """
        inputs = self.paths.root / "inputs"
        inputs.mkdir()
        runner = inputs / "runner"
        linked = self._runner.run([tools.CP.path, "-al", state.runner, str(runner)], check=False,
                                  timeout=300)
        if not linked.ok:
            shutil.rmtree(runner, ignore_errors=True)
            self._runner.run([tools.CP.path, "-a", state.runner, str(runner)], timeout=600)
        state.runner = str(runner)
        for attr, name in (("image", "appliance.img"), ("initiator_image", "initiator.img")):
            try:
                os.link(getattr(state, attr), inputs / name)
            except OSError:
                continue  # another filesystem: use it in place
            setattr(state, attr, str(inputs / name))

    def _start_supervisor(self, state: LabState, progress: Progress) -> None:
        progress("starting the lab supervisor (namespaces, bridges, qnetd, BMCs, nodes)")
        argv = [tools.UNSHARE.path, "--net", "--mount", "--propagation", "private", "--",
                sys.executable, "-m", "iscsiha_lab.supervisor", str(self.paths.root)]
        with self.paths.supervisor_log.open("ab") as log:
            self._supervisor_popen = self._runner.spawn(argv, stdout=log, env=package_env())
        ident = processes.identify(self._supervisor_popen.pid)
        state.supervisor = ident or ProcessId(self._supervisor_popen.pid, -1)
        write_json(self.paths.state_file, state.to_json())
        deadline = time.monotonic() + 120.0
        while time.monotonic() < deadline:
            if self._supervisor_popen.poll() is not None:
                raise IscsihaError.single(
                    "supervisor-failed", "supervisor", str(self.paths.supervisor_log),
                    "a supervisor that starts the lab", "exited early:\n" + self._log_tail())
            try:
                control.request(self.paths.control_socket, {"op": "ping"}, timeout=5.0)
                return
            except IscsihaError:
                time.sleep(0.2)
        raise IscsihaError.single("supervisor-timeout", "supervisor", str(self.paths.root),
                                  "ready within 120 s", self._log_tail())

    def _log_tail(self, lines: int = 25) -> str:
        try:
            text = self.paths.supervisor_log.read_text(errors="replace")
        except FileNotFoundError:
            return "(no supervisor log)"
        return "\n".join(text.splitlines()[-lines:])

    def wait_booted(self, names: Sequence[str], timeout: float,
                    progress: Progress = _quiet) -> dict[str, float]:
        """Wait until each node's agent answers and systemd has finished starting up.

        Returns seconds from now to each node's boot being finished.
        """
        started = time.monotonic()
        deadline = started + timeout
        pending = list(names)
        done: dict[str, float] = {}
        while pending:
            for name in list(pending):
                channel = self.channel(name)
                if not channel.ready():
                    continue
                left = max(5.0, deadline - time.monotonic())
                result = channel.run(["systemctl", "is-system-running", "--wait"], timeout=left)
                state = result.out.strip()
                if state not in ("running", "degraded"):
                    raise IscsihaError.single(
                        "boot-failed", "node", name, "systemd state running or degraded",
                        f"systemd says {state!r}")
                done[name] = time.monotonic() - started
                pending.remove(name)
                setup = channel.setup_report()
                if setup is not None and not setup.get("ok"):
                    progress(f"{name}: warning: node setup had failures: {setup.get('log')}")
                if state == "degraded":
                    failed = channel.run(["systemctl", "--failed", "--plain", "--no-legend"])
                    units = " ".join(line.split()[0] for line in failed.out.splitlines() if line)
                    state = f"degraded: failed {units}"
                progress(f"{name}: booted ({state}) after {done[name]:.1f} s")
            if pending:
                if time.monotonic() > deadline:
                    raise IscsihaError.single(
                        "boot-timeout", "node", ", ".join(pending),
                        f"booted within {timeout:.0f} s",
                        "see " + ", ".join(str(self.paths.console_log(n)) for n in pending))
                for name in pending:
                    if self.node_process(name) is None:
                        raise IscsihaError.single(
                            "node-died", "node", name, "a node that keeps running while it boots",
                            f"its UML process ended; see {self.paths.console_log(name)}")
                time.sleep(0.2)
        return done

    # -- down ------------------------------------------------------------------------------------

    def down(self, progress: Progress = _quiet) -> list[str]:
        """Stop the lab and everything it started; safe to call at any point, and again."""
        stopped: list[str] = []
        state = self.state()
        if state is None:
            return stopped
        if state.supervisor is not None and processes.is_running(state.supervisor):
            try:
                control.request(self.paths.control_socket, {"op": "shutdown"}, timeout=10.0)
            except (IscsihaError, OSError):
                processes.signal_process(state.supervisor, signal.SIGTERM)
            if not processes.wait_gone(state.supervisor, 60.0):
                progress("supervisor did not stop in 60 s: killing it")
                processes.signal_process(state.supervisor, signal.SIGKILL)
                processes.wait_gone(state.supervisor, 10.0)
            stopped.append(f"supervisor (pid {state.supervisor.pid})")
        if self._supervisor_popen is not None:
            self._supervisor_popen.wait(timeout=30)
            self._supervisor_popen = None
        # Whatever the supervisor could not stop (it was killed, or crashed):
        # by recorded pid and start time only, never by name.
        node_names = {n.name for n in self.topology.nodes}
        for name, proc in self._recorded().items():
            if name in node_names:  # a power cut, as the supervisor would do it
                if processes.signal_group(proc, signal.SIGKILL):
                    processes.wait_gone(proc, 10.0)
                    stopped.append(f"{name} (pid {proc.pid})")
            elif processes.is_running(proc):
                processes.stop(proc, grace=3.0)
                stopped.append(f"{name} (pid {proc.pid})")
        for name in node_names:
            self.paths.power_file(name).unlink(missing_ok=True)
        (self.paths.root / "services.json").unlink(missing_ok=True)
        self.paths.control_socket.unlink(missing_ok=True)
        # Disks and shares go (they are large, and stale); logs and state stay for a post-mortem.
        for node in self.topology.nodes:
            node_dir = self.paths.node_dir(node.name)
            for disk in ("root.cow", "data.img", BOOT_DISK, f"{BOOT_DISK}.partial"):
                (node_dir / disk).unlink(missing_ok=True)
            shutil.rmtree(self.paths.share_dir(node.name), ignore_errors=True)
        shutil.rmtree(self.paths.secrets, ignore_errors=True)
        shutil.rmtree(self.paths.root / "inputs", ignore_errors=True)
        # Secrets: the BMC password sits in each lan.conf, the lab CA's keys in qnetd/nssdb.
        for node in self.topology.appliances:
            (self.paths.bmc_dir(node.name) / "lan.conf").unlink(missing_ok=True)
        shutil.rmtree(self.paths.qnetd_dir / "nssdb", ignore_errors=True)
        state.phase = "down"
        state.supervisor = None
        write_json(self.paths.state_file, state.to_json())
        if stopped:
            progress("stopped: " + ", ".join(stopped))
        return stopped

    def _recorded(self) -> dict[str, ProcessId]:
        """Every process the run directory records, by name (nodes and services)."""
        found = {}
        for node in self.topology.nodes:
            if (proc := read_process(self.paths.power_file(node.name))) is not None:
                found[node.name] = proc
        for name in read_json(self.paths.root / "services.json") or {}:
            if (proc := read_process(self.paths.root / "services.json", name)) is not None:
                found[name] = proc
        return found

    # -- nodes -----------------------------------------------------------------------------------

    def node_process(self, name: str) -> ProcessId | None:
        proc = read_process(self.paths.power_file(name))
        return proc if proc is not None and processes.is_running(proc) else None

    def channel(self, name: str) -> GuestChannel:
        self.topology.node(name)
        return GuestChannel(self.paths, name, lambda: self.node_process(name) is not None)

    def exec(self, name: str, argv: Sequence[str], input: bytes | str | None = None,
             timeout: float = 300.0) -> GuestResult:
        self.topology.node(name)
        self.require_running()
        return self.channel(name).run(argv, input=input, timeout=timeout)

    def power(self, op: str, name: str) -> dict[str, Any]:
        """op: power-on, power-off (the `kill` verb), freeze, thaw, bmc-off, bmc-on."""
        self.topology.node(name)
        return self.request({"op": op, "node": name})

    def wipe(self, name: str) -> dict[str, Any]:
        """A powered-off box's disks made blank, as a new box's (its next boot is a first)."""
        self.topology.node(name)
        return self.request({"op": "wipe", "node": name})

    def trial_words(self, name: str, words: Sequence[str]) -> dict[str, Any]:
        """The node's next trial boot of an A/B slot (only a trial) gets these extra kernel
        words, then forgets them; no words: forget what was set."""
        self.topology.node(name)
        return self.request({"op": "trial-words", "node": name, "words": list(words)})

    def links(self, op: str, link: str, node: str | None) -> dict[str, Any]:
        self.topology.network(link)
        if node is not None:
            self.topology.tap(self.topology.node(node), link)
        return self.request({"op": op, "link": link, "node": node})

    def status(self) -> dict[str, Any]:
        state = self.state()
        if state is None or self.supervisor() is None:
            orphans = [f"{name} (pid {proc.pid})" for name, proc in self._recorded().items()
                       if processes.is_running(proc)]
            return {"running": False, "state_dir": str(self.paths.root),
                    "phase": state.phase if state else None, "orphans": orphans}
        live = self.request({"op": "status"})
        nodes = {}
        for node in self.topology.nodes:
            power = live["nodes"][node.name]
            entry: dict[str, Any] = {"role": node.role.value, **power}
            entry["agent"] = power["power"] != "off" and self.channel(node.name).ready()
            entry["addresses"] = {i.network.name: i.cidr for i in self.topology.interfaces(node)}
            entry["links"] = {
                i.network.name: "cut" if live["taps"].get(i.tap, {}).get("bridge") is None
                else "connected" for i in self.topology.interfaces(node)}
            if node.role is NodeRole.APPLIANCE:
                entry["bmc"] = str(self.topology.bmc_address(node))
            nodes[node.name] = entry
        return {
            "running": True,
            "state_dir": str(self.paths.root),
            "phase": state.phase,
            "supervisor": live["supervisor"],
            "timings": state.timings,
            "tiebreaker": str(self.topology.qnetd_address),
            "services": live["services"],
            "nodes": nodes,
        }

    # -- tiebreaker and BMC ----------------------------------------------------------------------

    def bmc_password(self) -> Secret:
        try:
            return Secret(self.paths.bmc_password_file.read_text().strip())
        except FileNotFoundError as exc:
            raise IscsihaError.single(
                "lab-not-running", "state-dir", str(self.paths.root),
                "a running lab", "it has no BMC password file") from exc

    def fence_options(self, target: str, action: str) -> str:
        """fence_ipmilan's options on stdin (key=value lines): keeps the password off argv."""
        node = self.topology.node(target)
        return "\n".join([
            f"ip={self.topology.bmc_address(node)}",
            f"username={self.topology.bmc_user}",
            f"password={self.bmc_password()}",
            "lanplus=1",
            f"cipher={cluster.BMC_CIPHER}",
            f"action={action}",
            "",
        ])
