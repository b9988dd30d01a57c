"""Pacemaker's own tools accept the generated CIB (needs crm_verify: pacemaker-cli-utils)."""

from __future__ import annotations

import shutil
from pathlib import Path

from iscsiha.commands.config import plan
from iscsiha.executors.runner import Runner
from iscsiha.model.load import load_text
from tests.conftest import EXAMPLE, skip_or_fail


def whole_cib(fragment: str, nodes: tuple[str, str]) -> str:
    """Wrap the fragment as a CIB of two online nodes with quorum, as crm_verify wants."""
    node_xml = "".join(f'<node id="{i}" uname="{n}"/>' for i, n in enumerate(nodes, 1))
    state = "".join(
        f'<node_state id="{i}" uname="{n}" in_ccm="true" crmd="online" join="member" '
        f'expected="member"/>' for i, n in enumerate(nodes, 1))
    body = fragment.replace("</configuration>", f"<nodes>{node_xml}</nodes></configuration>")
    return (f'<cib have-quorum="1" validate-with="pacemaker-3.9" admin_epoch="0" epoch="1" '
            f'num_updates="0">{body}<status>{state}</status></cib>')


def test_crm_verify_accepts_the_planned_cib(tmp_path: Path) -> None:
    crm_verify = shutil.which("crm_verify")
    if crm_verify is None:
        skip_or_fail("crm_verify is not installed (apt-get install pacemaker-cli-utils)")
        return
    config = load_text(EXAMPLE.read_text())
    cib_file = tmp_path / "cib.xml"
    cib_file.write_text(whole_cib(plan(config).cib, ("san-a", "san-b")))
    result = Runner().run([crm_verify, "-V", "-x", str(cib_file)], check=False)
    assert result.returncode == 0, result.stderr


def test_crm_verify_rejects_a_broken_cib(tmp_path: Path) -> None:
    """The check above can fail: a constraint on a missing resource is refused."""
    crm_verify = shutil.which("crm_verify")
    if crm_verify is None:
        skip_or_fail("crm_verify is not installed (apt-get install pacemaker-cli-utils)")
        return
    config = load_text(EXAMPLE.read_text())
    good = plan(config).cib
    broken = good.replace('with-rsc="drbd-vm-clone"', 'with-rsc="no-such-rsc"')
    assert broken != good
    cib_file = tmp_path / "cib.xml"
    cib_file.write_text(whole_cib(broken, ("san-a", "san-b")))
    assert Runner().run([crm_verify, "-x", str(cib_file)], check=False).returncode != 0
