"""Where the lab keeps things: its inputs (images, runner) and its run directory.

Inputs come from options, else environment variables, else defaults under
image/out/ of the current directory (the repository root when run from there):

    --image            ISCSIHA_LAB_IMAGE            image/out/iscsiha-lab-root.ext4
    --runner           ISCSIHA_LAB_RUNNER           image/out/uml-runner
    --initiator-image  ISCSIHA_LAB_INITIATOR_IMAGE  built and cached by the lab
    --state-dir        ISCSIHA_LAB_STATE_DIR        /run/iscsiha-lab

Inside the UML runner root every UML process sees the same fixed paths (set up
by the supervisor in the lab's private mount namespace): /mnt/lab is the run
directory, /mnt/initiator.img the initiator's root image. The appliance nodes boot
their own boot disks (boot_disk.py), made from the appliance image in their folders.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

from iscsiha.errors import IscsihaError

DEFAULT_STATE_DIR = Path("/run/iscsiha-lab")
DEFAULT_CACHE_DIR = Path("/var/cache/iscsiha-lab")
DEFAULT_IMAGE = Path("image/out/iscsiha-lab-root.ext4")
DEFAULT_RUNNER = Path("image/out/uml-runner")
UML_BINARY = Path("usr/bin/linux.uml")  # inside the runner root
UML_MODULES = Path("usr/lib/uml/modules")  # inside the runner root

# What the UML processes see inside the runner root.
GUEST_LAB_DIR = "/mnt/lab"
GUEST_INITIATOR_IMAGE = "/mnt/initiator.img"

# Characters that would break the quoted command line that ipmi_sim hands to
# /bin/sh, or the UML command line that splits on spaces and commas.
_UNSAFE = set(" \t\n\"'\\$`,;&|<>*?")


def _safe(path: Path, field: str) -> Path:
    bad = sorted(set(str(path)) & _UNSAFE)
    if bad:
        raise IscsihaError.single(
            "unsafe-path", field, str(path), "a path without spaces, quotes, commas or "
            "shell characters", f"contains {''.join(bad)!r}",
        )
    return path


@dataclass(frozen=True)
class LabImages:
    image: Path  # appliance root filesystem (ext4), root A of each appliance node's boot disk
    runner: Path  # forky root holding /usr/bin/linux.uml
    initiator_image: Path | None  # None: use (and if needed build) the cached one

    @classmethod
    def resolve(
        cls, image: Path | None, runner: Path | None, initiator_image: Path | None
    ) -> LabImages:
        def pick(given: Path | None, env: str, default: Path | None) -> Path | None:
            chosen = given or (Path(os.environ[env]) if os.environ.get(env) else default)
            return None if chosen is None else chosen.absolute()

        return cls(
            image=pick(image, "ISCSIHA_LAB_IMAGE", DEFAULT_IMAGE) or DEFAULT_IMAGE,
            runner=pick(runner, "ISCSIHA_LAB_RUNNER", DEFAULT_RUNNER) or DEFAULT_RUNNER,
            initiator_image=pick(initiator_image, "ISCSIHA_LAB_INITIATOR_IMAGE", None),
        )

    def problems(self) -> list[IscsihaError]:
        """Every missing or unusable input, each naming the path and what is expected."""
        found: list[IscsihaError] = []
        if not self.image.is_file():
            found.append(IscsihaError.single(
                "missing-image", "image", str(self.image),
                "an ext4 root filesystem image (build it with image/build, or pass --image "
                "or ISCSIHA_LAB_IMAGE)", "does not exist"))
        uml = self.runner / UML_BINARY
        if not uml.is_file():
            found.append(IscsihaError.single(
                "missing-runner", "runner", str(self.runner),
                f"a root directory containing {UML_BINARY} (build it with image/build, or "
                "pass --runner or ISCSIHA_LAB_RUNNER)", f"{uml} does not exist"))
        if self.initiator_image is not None and not self.initiator_image.is_file():
            found.append(IscsihaError.single(
                "missing-image", "initiator-image", str(self.initiator_image),
                "an ext4 root filesystem image, or no option to let the lab build one",
                "does not exist"))
        for field, path in (("image", self.image), ("runner", self.runner),
                            ("initiator-image", self.initiator_image)):
            if path is not None:
                try:
                    _safe(path, field)
                except IscsihaError as exc:
                    found.append(exc)
        return found

    def kernel_version(self) -> str:
        """The UML kernel's version, from the one module directory the runner ships."""
        versions = sorted(p.name for p in (self.runner / UML_MODULES).glob("*") if p.is_dir())
        if len(versions) != 1:
            raise IscsihaError.single(
                "runner-modules", "runner", str(self.runner / UML_MODULES),
                "exactly one kernel module directory", f"found {versions or 'none'}")
        return versions[0]


@dataclass(frozen=True)
class LabPaths:
    """The run directory: state file, control socket, logs and one folder per node."""

    root: Path

    @classmethod
    def resolve(cls, state_dir: Path | None) -> LabPaths:
        chosen = state_dir or Path(os.environ.get("ISCSIHA_LAB_STATE_DIR") or DEFAULT_STATE_DIR)
        return cls(_safe(chosen.absolute(), "state-dir"))

    @property
    def state_file(self) -> Path:
        return self.root / "state.json"

    @property
    def control_socket(self) -> Path:
        return self.root / "control.sock"

    @property
    def supervisor_log(self) -> Path:
        return self.root / "supervisor.log"

    @property
    def secrets(self) -> Path:
        return self.root / "secrets"

    @property
    def bmc_password_file(self) -> Path:
        return self.secrets / "bmc-password"

    @property
    def qnetd_dir(self) -> Path:
        return self.root / "qnetd"

    def node_dir(self, node: str) -> Path:
        return self.root / "nodes" / node

    def share_dir(self, node: str) -> Path:
        """Mounted in the guest (hostfs) at /run/iscsiha-lab: the exec channel and node config."""
        return self.node_dir(node) / "share"

    def power_file(self, node: str) -> Path:
        return self.node_dir(node) / "power.json"

    def console_log(self, node: str) -> Path:
        return self.node_dir(node) / "console.log"

    def bmc_dir(self, node: str) -> Path:
        return self.root / "bmc" / node

    def guest_path(self, host_path: Path) -> str:
        """The same file as a UML process inside the runner root sees it."""
        return f"{GUEST_LAB_DIR}/{host_path.relative_to(self.root)}"
