"""Boot-time self check: the kernel pieces the appliance needs are there."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from iscsiha.commands.cluster_env import ClusterEnv

MODPROBE = "/usr/sbin/modprobe"
MODULES = ("configfs", "target_core_mod", "target_core_iblock", "iscsi_target_mod", "drbd")


@dataclass(frozen=True)
class Check:
    name: str
    ok: bool
    detail: str


def selfcheck(env: ClusterEnv, progress: Callable[[Check], None] = lambda c: None) -> list[Check]:
    """Load each module the storage path needs; report every one, not just the first failure."""
    checks = []
    for module in MODULES:
        result = env.runner.run([MODPROBE, module], check=False, timeout=30.0)
        detail = "ok" if result.ok else (result.stderr.strip() or f"exit {result.returncode}")
        check = Check(f"module {module}", result.ok, detail)
        progress(check)
        checks.append(check)
    return checks
