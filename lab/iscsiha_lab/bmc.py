"""A simulated BMC per appliance node: OpenIPMI's ipmi_sim speaking IPMI over LAN (v1.5 and v2.0).

So fencing in the lab is the real path: pacemaker or a test runs the stock
`fence_ipmilan` (ipmitool inside) on an appliance node, over the management
network, against the BMC address of the other node. ipmi_sim's
`chassis_control` program turns the chassis commands into lab power actions:
"set power 0" is a power cut of that node's UML process, "set power 1" boots it
again (see bmc_power.py). Power cycle and reset become off then on.
"""

from __future__ import annotations

import hashlib
import secrets
import shlex
import string

from iscsiha_lab.paths import LabPaths
from iscsiha_lab.tools import IPMI_SIM
from iscsiha_lab.topology import LabNode, Topology

IPMI_PORT = 623
# IPMI 1.5 passwords are at most 16 bytes; keep to letters and digits so the
# password needs no quoting in lan.conf.
PASSWORD_LENGTH = 16


def new_password() -> str:
    alphabet = string.ascii_letters + string.digits
    return "".join(secrets.choice(alphabet) for _ in range(PASSWORD_LENGTH))


def lan_conf(
    topology: Topology, node: LabNode, password: str, power_command: list[str]
) -> str:
    """ipmi_sim's configuration (ipmi_lan(5)) for this node's BMC."""
    if not password.isalnum() or len(password) > PASSWORD_LENGTH:
        raise ValueError("BMC password must be at most 16 letters and digits")
    guid = hashlib.sha256(f"iscsiha-lab-bmc-{node.name}".encode()).hexdigest()[:32]
    # ipmi_sim hands this string to popen(), i.e. /bin/sh -c, with " get power" or
    # ' set power "0"' appended: quote every word for the shell.
    command = " ".join(shlex.quote(word) for word in power_command)
    return "\n".join([
        f'name "{node.name}"',
        "set_working_mc 0x20",
        "  startlan 1",
        f"    addr {topology.bmc_address(node)} {IPMI_PORT}",
        "    priv_limit admin",
        "    allowed_auths_callback none",
        "    allowed_auths_user md5",
        "    allowed_auths_operator md5",
        "    allowed_auths_admin md5",
        f"    guid {guid}",
        "  endlan",
        f'  chassis_control "{command}"',
        # user 1 is the anonymous user: disabled.
        '  user 1 false "" "" user 1 none',
        f'  user 2 true "{topology.bmc_user}" "{password}" admin 10 md5',
        "",
    ])


# The management controller that the emulator exposes: a BMC with a SEL, enough
# for ipmitool's chassis commands (what fence_ipmilan uses).
EMU_COMMANDS = "\n".join([
    "mc_setbmc 0x20",
    "mc_add 0x20 0 no-device-sdrs 0x23 9 8 0x9f 0x1291 0xf02 persist_sdr",
    "sel_enable 0x20 1000 0x0a",
    "mc_enable 0x20",
    "",
])


def ipmi_sim_argv(paths: LabPaths, node: LabNode) -> list[str]:
    folder = paths.bmc_dir(node.name)
    return [IPMI_SIM.path, "-n", "-c", str(folder / "lan.conf"), "-f", str(folder / "bmc.emu"),
            "-s", str(folder / "state")]
