"""The lab's records on disk. Each file has exactly one writer, so no locking is needed:

    state.json           the CLI (`up`, then `down`): inputs, supervisor pid, phase, timings
    services.json        the supervisor: pids of qnetd and the BMC simulators
    nodes/N/power.json   the supervisor: pid of node N's UML process while it runs

Writes are atomic (temporary file, fsync, rename), so a reader never sees half a file.
"""

from __future__ import annotations

import json
import os
import tempfile
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from iscsiha_lab.processes import ProcessId


def write_json(path: Path, data: Mapping[str, Any], mode: int = 0o600) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as out:
            json.dump(data, out, indent=2, sort_keys=True)
            out.write("\n")
            out.flush()
            os.fsync(out.fileno())
        os.chmod(tmp, mode)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def read_json(path: Path) -> dict[str, Any] | None:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        return None
    return data if isinstance(data, dict) else None


@dataclass
class LabState:
    image: str
    runner: str
    initiator_image: str
    kernel: str
    supervisor: ProcessId | None = None
    phase: str = "starting"  # starting, booting, cluster, ready, failed
    timings: dict[str, float] = field(default_factory=dict)

    def to_json(self) -> dict[str, Any]:
        return {
            "image": self.image,
            "runner": self.runner,
            "initiator_image": self.initiator_image,
            "kernel": self.kernel,
            "supervisor": self.supervisor.to_json() if self.supervisor else None,
            "phase": self.phase,
            "timings": self.timings,
        }

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> LabState:
        sup = data.get("supervisor")
        return cls(
            image=str(data["image"]),
            runner=str(data["runner"]),
            initiator_image=str(data["initiator_image"]),
            kernel=str(data["kernel"]),
            supervisor=ProcessId.from_json(sup) if isinstance(sup, dict) else None,
            phase=str(data.get("phase", "starting")),
            timings={str(k): float(v) for k, v in dict(data.get("timings", {})).items()},
        )


def load_state(path: Path) -> LabState | None:
    data = read_json(path)
    return None if data is None else LabState.from_json(data)


def read_process(path: Path, key: str | None = None) -> ProcessId | None:
    data = read_json(path)
    if data is None:
        return None
    record = data.get(key) if key is not None else data
    if not isinstance(record, dict):
        return None
    try:
        return ProcessId.from_json(record)
    except (KeyError, ValueError):
        return None
