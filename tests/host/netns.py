"""Throwaway network namespaces for host-kernel tests: created here, always deleted."""

from __future__ import annotations

import os
import shutil
import subprocess
import uuid
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from typing import Any

from iscsiha.executors.runner import CommandResult, Runner
from tests.conftest import skip_or_fail

IP = "/usr/sbin/ip"


class NetnsRunner(Runner):
    """Runs every command inside one namespace, as the agents would on a box."""

    def __init__(self, netns: str) -> None:
        self.netns = netns

    def run(self, argv: Sequence[str], *, input: str | None = None, check: bool = True,
            timeout: float | None = 60.0, env: Mapping[str, str] | None = None
            ) -> CommandResult:
        return super().run([IP, "netns", "exec", self.netns, *argv], input=input,
                           check=check, timeout=timeout, env=env)

    def spawn(self, argv: Sequence[str], **kwargs: Any) -> subprocess.Popen[bytes]:
        return super().spawn([IP, "netns", "exec", self.netns, *argv], **kwargs)


def require_root_netns() -> None:
    if os.geteuid() != 0 or shutil.which("ip") is None:
        skip_or_fail("needs root and iproute2 to make throwaway namespaces")


@contextmanager
def storage_pair() -> Iterator[tuple[str, str]]:
    """Two namespaces on one link: a 'box' (stor0, 10.99.30.11/24) and a 'client'
    (10.99.30.50/24). Addresses exist only inside these namespaces."""
    require_root_netns()
    tag = uuid.uuid4().hex[:8]
    box, client = f"iscsiha-box-{tag}", f"iscsiha-cli-{tag}"
    for ns in (box, client):
        subprocess.run([IP, "netns", "add", ns], check=True)
    try:
        subprocess.run([IP, "-n", box, "link", "add", "stor0", "type", "veth", "peer", "name",
                        "cli0", "netns", client], check=True)
        for ns, dev, addr in ((box, "stor0", "10.99.30.11/24"),
                              (client, "cli0", "10.99.30.50/24")):
            subprocess.run([IP, "-n", ns, "addr", "add", addr, "dev", dev], check=True)
            subprocess.run([IP, "-n", ns, "link", "set", dev, "up"], check=True)
            subprocess.run([IP, "-n", ns, "link", "set", "lo", "up"], check=True)
        yield box, client
    finally:
        for ns in (box, client):
            subprocess.run([IP, "netns", "delete", ns], check=False)
