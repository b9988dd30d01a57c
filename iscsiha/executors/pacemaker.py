"""Pacemaker's command-line tools (cibadmin, crm_diff, crm_resource), via the runner.

The CIB is the cluster's replicated store; changes go in as a versioned patch so
a CIB that changed since it was read refuses the patch instead of losing a change.
"""

from __future__ import annotations

import contextlib
import tempfile
import xml.etree.ElementTree as ET
from collections.abc import Callable, Mapping
from pathlib import Path

from iscsiha.errors import IscsihaError
from iscsiha.executors.runner import Runner, command_failed

CIBADMIN = "/usr/sbin/cibadmin"
CRM_DIFF = "/usr/sbin/crm_diff"
CRM_RESOURCE = "/usr/sbin/crm_resource"
CRM_MON = "/usr/sbin/crm_mon"
CRM_ATTRIBUTE = "/usr/sbin/crm_attribute"

SETTLE_SECONDS = 60.0  # a refused CIB patch waits this long at most for a transition


class Pacemaker:
    def __init__(self, runner: Runner, env: Mapping[str, str] | None = None) -> None:
        """``env`` may carry CIB_file=PATH to work on a CIB file instead of the cluster."""
        self._runner = runner
        self._env = env

    def query(self) -> str:
        return self._runner.run([CIBADMIN, "--query"], env=self._env).stdout

    def patch(self, old: str, new: str) -> bool:
        """Apply the change from ``old`` to ``new``; False when there is none."""
        with tempfile.TemporaryDirectory(prefix="iscsiha-cib-") as tmp:
            old_file, new_file = Path(tmp, "old.xml"), Path(tmp, "new.xml")
            old_file.write_text(old)
            new_file.write_text(new)
            diff = self._runner.run([CRM_DIFF, "--original", str(old_file), "--new",
                                     str(new_file)], check=False, env=self._env)
        if diff.returncode == 0:
            return False
        if diff.returncode != 1:  # crm_diff: 1 means "they differ, here is the patch"
            raise command_failed(diff)
        result = self._runner.run([CIBADMIN, "--patch", "--xml-pipe"], input=diff.stdout,
                                  check=False, env=self._env)
        if not result.ok:
            raise IscsihaError.single(
                "cib-patch-refused", "CIB", result.stderr.strip() or result.returncode,
                "a CIB unchanged since it was read", "the cluster refused the change; "
                "nothing was applied (was the CIB changed meanwhile? try again)")
        return True

    def update(self, change: Callable[[str], str], attempts: int = 5) -> bool:
        """Patch the live CIB to ``change(live)``; False when that changes nothing.

        A patch names the exact CIB version it applies to, and status updates bump it
        too: a patch refused as older is made again on a fresh read. During a
        transition (say, an apply just before) the version moved faster than a read,
        diff and patch take, and in CI five quick retries all lost that race; so each
        retry waits for the cluster to settle first. ``change`` may raise to stop.
        """
        for attempt in range(attempts):
            live = self.query()
            try:
                return self.patch(live, change(live))
            except IscsihaError as exc:
                if attempt == attempts - 1 or exc.reports[0].code != "cib-patch-refused":
                    raise
            # Still busy after that? The next attempt may get through all the same.
            with contextlib.suppress(IscsihaError):
                self.wait(SETTLE_SECONDS)
        raise AssertionError("unreachable")

    def status(self) -> str:
        """crm_mon's XML: nodes online, each resource's role and where it runs."""
        return self._runner.run([CRM_MON, "--one-shot", "--output-as=xml"],
                                env=self._env).stdout

    def dc_and_quorum(self, timeout: float = 5.0) -> tuple[str | None, bool | None]:
        """(the DC's name, whether its partition has quorum); (None, None) while there
        is no DC or crm_mon cannot tell (it is asked from alert agents: bounded, and
        never an error)."""
        try:
            result = self._runner.run([CRM_MON, "--one-shot", "--output-as=xml"],
                                      check=False, timeout=timeout, env=self._env)
            dc = ET.fromstring(result.stdout).find("summary/current_dc") if result.ok else None
        except (IscsihaError, ET.ParseError, ValueError):
            return None, None
        if dc is None or dc.get("present") != "true":
            return None, None
        quorum = dc.get("with_quorum")
        return dc.get("name"), {"true": True, "false": False}.get(quorum or "")

    def wait(self, timeout: float) -> None:
        """Until the cluster has no action pending (a transition finished)."""
        result = self._runner.run([CRM_RESOURCE, "--wait", f"--timeout={int(timeout)}s"],
                                  check=False, timeout=timeout + 30, env=self._env)
        if not result.ok:
            raise IscsihaError.single(
                "cluster-busy", "cluster", result.stderr.strip() or result.returncode,
                f"settled within {timeout:.0f} s", "actions are still pending or failed")

    def move(self, resource: str, node: str) -> None:
        """Ask Pacemaker to run ``resource`` on ``node`` (a cli-prefer constraint)."""
        self._runner.run([CRM_RESOURCE, "--move", "--resource", resource, "--node", node],
                         env=self._env)

    def clear(self, resource: str) -> None:
        """Drop the constraints ``move`` left; placement follows the configured scores."""
        self._runner.run([CRM_RESOURCE, "--clear", "--resource", resource], env=self._env)

    def cleanup_node(self, node: str) -> None:
        """Forget the failed operations on ``node``; Pacemaker probes its resources again."""
        self._runner.run([CRM_RESOURCE, "--cleanup", "--node", node], env=self._env)

    def standby(self, node: str, on: bool) -> None:
        """Pacemaker's standby node attribute (permanent: it outlives a reboot)."""
        self._runner.run([CRM_ATTRIBUTE, "--node", node, "--name", "standby",
                          "--update", "on" if on else "off", "--lifetime", "forever"],
                         env=self._env)
