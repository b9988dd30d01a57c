"""The peer channel as an attacker holding the cluster SSH key would use it: forged
requests from san-a to san-b over the real forced command, each refused with a report
and nothing written or run on san-b; and the versions two releases talk by."""

from __future__ import annotations

import json

import pytest
from iscsiha_lab.lab import Lab

from iscsiha import __version__
from iscsiha.plan.peer_ssh import KEY, KNOWN_HOSTS
from iscsiha.protocol.version import CURRENT, OLDEST

pytestmark = pytest.mark.lab
# What a forged request could have changed on the other box: root's and the cluster's
# SSH trust, DRBD's files (run as root by its handlers), Pacemaker's secrets, the LVs.
WATCHED = ("sha256sum /root/.ssh/authorized_keys /etc/iscsiha/ssh/authorized_keys "
           "/etc/iscsiha/desired.toml 2>&1; ls -la /etc/drbd.d; ls /tmp/x.conf /tmp/owned 2>&1; "
           "find /var/lib/pacemaker/lrm/secrets -printf '%p %m %s\\n' 2>&1 | sort; "
           "lvs --noheadings -o lv_name,lv_size 2>&1")
HANDLER = 'resource vm { handlers { fence-peer "/bin/sh -c \'touch /tmp/owned\'"; } }'
FORGED = [
    ("write-secrets", {"secrets": {"fence-san-a": {
        "../../../../../../root/.ssh/authorized_keys": "ssh-ed25519 AAAA attacker"}}}),
    ("write-files", {"files": [["/etc/drbd.d/evil.res", HANDLER, 0o4777]]}),
    ("write-drbd-files", {"desired": "[cluster]\nname = 'x'\n", "resources": {}}),
    ("create-volumes", {"volumes": [["--force", "data", 1048576]]}),
    ("create-volumes", {"volumes": [["evil", "-c/tmp/x.conf", 1048576]]}),
    ("up", {"resources": ["-c/tmp/x.conf"]}),
    ("drbd-role", {"role": "primary", "volumes": ["vm\n/0"]}),
    ("up", "{not json"),
    # A release this box does not talk to, and garbage where the protocol goes.
    (f"up --protocol {CURRENT + 1}", {"resources": ["alpha"]}),
    ("up --protocol x", {"resources": ["alpha"]}),
    ("up --protocol 1 --force", {"resources": ["alpha"]}),
]


def _to_san_b(lab: Lab, step: str, body: object) -> tuple[int, str]:
    """``iscsiha node STEP`` on san-b through the cluster key, as apply sends it."""
    address = lab.topology.address(lab.topology.node("san-b"), "link0")
    result = lab.exec("san-a", [
        "ssh", "-i", KEY, "-o", f"UserKnownHostsFile={KNOWN_HOSTS}",
        "-o", "StrictHostKeyChecking=yes", "-o", "BatchMode=yes", f"root@{address}",
        f"/usr/bin/iscsiha node {step}"],
        input=body if isinstance(body, str) else json.dumps(body), timeout=60)
    return result.returncode, result.out


def test_forged_peer_requests_are_refused_with_nothing_written_on_the_other_box(
        lab: Lab) -> None:
    before = lab.exec("san-b", ["sh", "-c", WATCHED]).out
    for step, body in FORGED:
        code, out = _to_san_b(lab, step, body)
        assert code == 1, (step, out)
        assert json.loads(out)["reports"], (step, out)
    assert lab.exec("san-b", ["sh", "-c", WATCHED]).out == before
    assert not lab.exec("san-b", ["test", "-e", "/tmp/owned"]).ok


def test_a_well_formed_request_still_works_over_the_same_channel(lab: Lab) -> None:
    code, out = _to_san_b(lab, "seen-initiators", {})
    assert code == 0, out
    assert isinstance(json.loads(out)["iqns"], list)


def test_the_other_box_says_its_release_and_protocols_over_the_same_channel(lab: Lab) -> None:
    code, out = _to_san_b(lab, "hello", {})
    assert code == 0, out
    assert json.loads(out) == {"release": __version__, "oldest": OLDEST, "newest": CURRENT}
    code, out = _to_san_b(lab, f"seen-initiators --protocol {CURRENT}", {})
    assert code == 0, out
