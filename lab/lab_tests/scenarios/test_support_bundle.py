"""`iscsiha support-bundle` on a lab box: both boxes' parts, and not one secret of the
lab's cluster in any file of it.

A target with mutual CHAP of its own is exported first, so the CIB, LIO, DRBD's
files and Pacemaker's lrm:// store all hold secrets; the secrets are then read off
the boxes themselves (the desired state's typed Secrets, the cluster key and the DRBD
secrets derived from it, the lrm:// store, the SSH private keys) and each is looked
for, in every form the redactor knows, in every file of the bundle.
"""

from __future__ import annotations

import io
import re
import tarfile
from collections.abc import Iterator

import pytest
from iscsiha_lab.desired import cluster_data
from iscsiha_lab.initiator import MUTUAL, iqn
from iscsiha_lab.lab import Lab
from iscsiha_lab.pair import converge, iscsiha

from iscsiha.model.load import load_text
from iscsiha.plan.drbd import peer_secret
from iscsiha.redaction import VALUE_MIN, forms, model_secrets

pytestmark = pytest.mark.lab
BOXES = ("san-a", "san-b")
TARGET = "bundle"
PORTAL = "10.99.30.106"  # apart from the other lab tests' portals
OUTPUT = "/root/support-bundle-test.tar.gz"
KEYS = ("/etc/iscsiha/ssh/id_ed25519", "/etc/ssh/ssh_host_ed25519_key")


@pytest.fixture(scope="module")
def bundle(lab: Lab) -> Iterator[dict[str, bytes]]:
    """The bundle made on san-a while a CHAP target of its own is exported."""
    data = cluster_data(lab)
    plain = dict(data, volumes=[], targets=[])
    data["volumes"] = [{"name": TARGET, "size": "32M"}]
    data["targets"] = [{"name": TARGET, "iqn": iqn(TARGET), "portals": [PORTAL],
                        "preferred_node": "san-a", "failback": "manual",
                        "initiators": [iqn("bundle-hv")], "auth": MUTUAL,
                        "luns": [{"lun": 0, "volume": TARGET}]}]
    converge(lab, data)
    try:
        made = iscsiha(lab, "support-bundle", "--since", "1h", "--output", OUTPUT, timeout=900)
        assert made.ok, made.out + made.err
        assert lab.exec("san-a", ["stat", "-c", "%a", OUTPUT]).check().out.strip() == "600"
        raw = lab.exec("san-a", ["cat", OUTPUT]).check().stdout
        with tarfile.open(fileobj=io.BytesIO(raw), mode="r:gz") as tar:
            files = {i.name: tar.extractfile(i).read()  # type: ignore[union-attr]
                     for i in tar if i.isfile()}
        yield files
    finally:
        lab.exec("san-a", ["rm", "-f", OUTPUT])
        converge(lab, plain)


def box_secrets(lab: Lab, box: str) -> set[str | bytes]:
    """Every secret ``box`` holds, read off it (not from the lab's own records)."""
    found: set[str | bytes] = set()
    desired = lab.exec(box, ["cat", "/etc/iscsiha/desired.toml"]).check().out
    config = load_text(desired, f"{box}'s desired state")
    found |= model_secrets(config)
    key = lab.exec(box, ["cat", "/etc/corosync/authkey"]).check().stdout
    found.add(key)
    found |= {peer_secret(key, t.name) for t in config.targets}
    store = lab.exec(box, ["find", "/var/lib/pacemaker/lrm/secrets", "-type", "f"]).check().out
    for path in store.split():
        found.add(lab.exec(box, ["cat", path]).check().out.rstrip("\n"))
    for path in KEYS:
        pem = lab.exec(box, ["cat", path]).check().out
        # Each base64 line of the private key: any one of them is a leak.
        found |= {line for line in pem.splitlines() if re.fullmatch(r"[A-Za-z0-9+/=]{20,}", line)}
    return found


def test_the_bundle_holds_both_boxes_parts(bundle: dict[str, bytes]) -> None:
    readme = bundle["README.txt"].decode()
    assert "no part" not in readme, readme
    for box in BOXES:
        for name in ("pacemaker/cib.xml", "pacemaker/crm_mon.txt", "drbd/status.txt",
                     "drbd/drbdsetup-show.txt", "corosync/quorumtool.txt",
                     "journal/units.txt", "lio/rtslib-dump.json", "status.json",
                     "versions/packages.txt", "files/etc/iscsiha/desired.toml",
                     "files/var/log/iscsiha/audit.jsonl"):  # the applies, on both boxes
            assert f"{box}/{name}" in bundle, f"{box}/{name} missing"
        assert TARGET.encode() in bundle[f"{box}/drbd/drbdsetup-show.txt"]
        assert b"Quorate" in bundle[f"{box}/corosync/quorumtool.txt"]
    # The box serving the target shows it in LIO, its CHAP gone.
    assert iqn(TARGET).encode() in bundle["san-a/lio/rtslib-dump.json"]
    assert b"[redacted]" in bundle["san-a/lio/rtslib-dump.json"]


def test_no_secret_of_the_lab_is_in_any_file_of_the_bundle(lab: Lab,
                                                           bundle: dict[str, bytes]) -> None:
    secrets: set[str | bytes] = {lab.bmc_password(), MUTUAL["secret"], MUTUAL["mutual_secret"]}
    for box in BOXES:
        secrets |= box_secrets(lab, box)
    wanted = {f for s in secrets for f in forms(s) if len(f) >= VALUE_MIN}
    assert len(wanted) > 20  # the secrets were found at all
    leaks = sorted({name for name, content in bundle.items() for f in wanted if f in content})
    assert not leaks, f"secrets in {leaks}"
    names = set(bundle)
    assert not [n for n in names if "authkey" in n or "id_ed25519" in n or "lrm" in n]
