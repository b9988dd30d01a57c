"""The storage path through the cluster, in the lab: apply, log in, move, resize, refuse.

The tests share one applied desired state (two targets, one per box) and run in
file order. Each prints the figures it measures (pytest -s shows them).
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator
from typing import Any

import pytest
from iscsiha_lab.initiator import Initiator, iqn, wait_for
from iscsiha_lab.lab import Lab
from iscsiha_lab.pair import apply, iscsiha, target_on

from iscsiha.model.identity import lun_identity
from lab_tests.scenarios.storage import cib_epoch, desired, lvs, with_volume_size

pytestmark = pytest.mark.lab
ONE, EIGHT = "10.99.30.100", "10.99.30.101"


@pytest.fixture(scope="module")
def applied(lab: Lab) -> Iterator[tuple[dict[str, Any], Initiator]]:
    initiator = Initiator(lab)
    data = desired(lab, initiator.iqn)
    started = time.monotonic()
    result = apply(lab, data)
    assert result.ok, result.out + result.err
    print(f"\napply: 9 volumes, 2 targets: {time.monotonic() - started:.1f} s")
    wait_for("both targets started where preferred",
             lambda: target_on(lab, "one") == "san-a" and target_on(lab, "eight") == "san-b")
    try:
        yield data, initiator
    finally:
        initiator.try_run("sh", "-c", "iscsiadm -m node --logoutall=all; "
                                      "iscsiadm -m node -o delete; iscsiadm -m iface -I stranger "
                                      "-o delete")


def test_apply_makes_replicated_volumes_without_a_full_sync(
        lab: Lab, applied: tuple[dict[str, Any], Initiator]) -> None:
    for box in ("san-a", "san-b"):
        names = {line.split()[0] for line in lvs(lab, box).splitlines()}
        assert {"solo", *(f"disk{i}" for i in range(8))} <= names
        drbd = lab.exec(box, ["cat", "/proc/drbd"]).check().out
        # The LUNs' volumes and each target's reservations volume.
        assert drbd.count("ds:UpToDate/UpToDate") == 9 + len(applied[0]["targets"]), drbd
        # Skipped initial sync: nothing was sent at creation beyond the tests' own writes.
        assert "sync'ed" not in drbd


def test_applying_the_same_state_again_leaves_the_cluster_configuration_alone(
        lab: Lab, applied: tuple[dict[str, Any], Initiator]) -> None:
    epoch = cib_epoch(lab)
    result = apply(lab, applied[0])
    assert result.ok, result.out + result.err
    assert "cluster configuration unchanged" in result.out, result.out
    assert cib_epoch(lab) == epoch


def test_initiator_logs_in_with_mutual_chap_writes_and_reads_back(
        lab: Lab, applied: tuple[dict[str, Any], Initiator]) -> None:
    _, ini = applied
    ini.configure(iqn("one"), ONE)
    (disk,) = ini.login(iqn("one"), ONE, 1)
    ident = lun_identity(iqn("one"), "solo")
    assert ini.identity(disk) == (ident.serial, f"0x{ident.naa[len('naa.'):]}")
    ini.write_and_read_back(disk)


def test_a_wrong_secret_and_an_initiator_not_in_the_acl_are_refused(
        lab: Lab, applied: tuple[dict[str, Any], Initiator]) -> None:
    _, ini = applied
    ini.configure(iqn("eight"), EIGHT, secret="wrong-Secret-1")
    login = ini.try_run(*ini.node(iqn("eight"), EIGHT), "--login")
    assert login.returncode == 24, login.out + login.err  # authorization failure
    ini.run("iscsiadm", "-m", "iface", "-I", "stranger", "-o", "new")
    ini.run("iscsiadm", "-m", "iface", "-I", "stranger", "-o", "update", "-n",
            "iface.initiatorname", "-v", "iqn.2026-11.org.example.lab:stranger")
    ini.configure(iqn("eight"), EIGHT, iface="stranger")
    stranger = ini.try_run(*ini.node(iqn("eight"), EIGHT), "-I", "stranger", "--login")
    assert stranger.returncode == 24, stranger.out + stranger.err
    # Discovery remembers the interfaces it ran with: forget all of it, or later
    # discoveries bring the stranger's records back.
    ini.run("sh", "-c", "iscsiadm -m node -o delete; "
                        f"iscsiadm -m discoverydb -t st -p {EIGHT} -o delete; "
                        "iscsiadm -m iface -I stranger -o delete")


def _under_io(ini: Initiator, name: str, disks: list[str],
              action: Callable[[], str]) -> dict[str, Any]:
    """The probe's figures for ``disks`` while ``action`` runs; its output as "action"."""
    stop = f"/tmp/probe-{name}.stop"
    ini.run("rm", "-f", stop)
    out: dict[str, Any] = {}
    probe = threading.Thread(target=lambda: out.update(ini.probe(disks, 600, stop)))
    probe.start()
    try:
        time.sleep(5)
        out["action"] = action()
        time.sleep(5)
    finally:
        ini.run("touch", stop)
        probe.join(timeout=700)
    return out


def _move_under_io(lab: Lab, ini: Initiator, target: str, disks: list[str],
                   node: str) -> dict[str, Any]:
    def move() -> str:
        moved = iscsiha(lab, "target", "move", target, node)
        assert moved.ok, moved.out + moved.err
        assert target_on(lab, target) == node
        return moved.out.strip()

    return _under_io(ini, target, disks, move)


def test_planned_moves_keep_io_going_without_errors_or_lost_writes(
        lab: Lab, applied: tuple[dict[str, Any], Initiator]) -> None:
    _, ini = applied
    ini.configure(iqn("eight"), EIGHT)
    disks = ini.login(iqn("eight"), EIGHT, 8)
    before = [ini.identity(d) for d in disks]
    (solo,) = ini.login(iqn("one"), ONE, 1) if not _logged_in(ini, "one") else [_disk(ini)]
    results = {"1 LUN": _move_under_io(lab, ini, "one", [solo], "san-b"),
               "8 LUNs": _move_under_io(lab, ini, "eight", disks, "san-a")}
    for what, r in results.items():
        print(f"\nplanned move, {what}: I/O pause {r['max_gap_s']} s, {r['writes']} writes, "
              f"{r['errors']} errors, {r['lost']} lost of {r['checked']} checked "
              f"({r['action']})")
        assert r["errors"] == 0, r["error_text"]
        assert r["lost"] == 0 and r["unreadable"] == 0, r["error_text"]
        assert r["writes"] > 0
    # The same LUNs, seen from the other box, are the same LUNs.
    assert [ini.identity(d) for d in disks] == before


def _logged_in(ini: Initiator, target: str) -> bool:
    return iqn(target) in ini.try_run("iscsiadm", "-m", "session").out


def _disk(ini: Initiator) -> str:
    return f"/dev/{ini.disks(iqn('one'))[0]}"


def test_resize_is_seen_by_the_initiator_without_logging_out(
        lab: Lab, applied: tuple[dict[str, Any], Initiator]) -> None:
    data, ini = applied
    if not _logged_in(ini, "one"):
        ini.configure(iqn("one"), ONE)
        ini.login(iqn("one"), ONE, 1)
    disk = _disk(ini)
    sessions = ini.run("iscsiadm", "-m", "session")
    size = int(ini.run("blockdev", "--getsize64", disk))
    result = apply(lab, with_volume_size(data, "solo", "48M"))
    assert result.ok, result.out + result.err
    ini.run("iscsiadm", "-m", "session", "--rescan")
    wait_for("the larger size at the initiator", lambda: int(
        ini.run("blockdev", "--getsize64", disk)) > size, timeout=60)
    grown = int(ini.run("blockdev", "--getsize64", disk))
    assert grown >= size + 15 * 2**20
    assert ini.run("iscsiadm", "-m", "session") == sessions  # the same sessions, no re-login
    print(f"\nresize: {size} -> {grown} bytes, seen after a rescan")
    applied[0]["volumes"][0]["size"] = "48M"  # the desired state now


@pytest.mark.parametrize("change, code", [
    (lambda d: d["volumes"].append({"name": "Bad_Name", "size": "8M"}), "name"),
    (lambda d: d["volumes"].append({"name": "huge", "size": "10GB"}), "size"),
    (lambda d: d["targets"][0].update(iqn="iqn.2026-11.lab:no-dot"), "iqn"),
    (lambda d: d["targets"][0]["auth"].update(secret="short"), "secret"),
    (lambda d: d["volumes"].append({"name": "toolarge", "size": "64G"}), "no-space"),
    (lambda d: d["volumes"].pop(0) and d["targets"].pop(0), "delete-not-confirmed"),
    (lambda d: d["volumes"][0].update(size="16M"), "volume-shrink"),
])
def test_bad_input_to_apply_is_refused_and_changes_nothing(
        lab: Lab, applied: tuple[dict[str, Any], Initiator], change: Any, code: str) -> None:
    data = with_volume_size(applied[0], "solo", applied[0]["volumes"][0]["size"])
    change(data)
    epoch, volumes = cib_epoch(lab), (lvs(lab, "san-a"), lvs(lab, "san-b"))
    result = apply(lab, data)
    assert result.returncode == 1, result.out + result.err
    assert code in result.err and "nothing was applied" in result.err, result.err
    assert cib_epoch(lab) == epoch
    assert (lvs(lab, "san-a"), lvs(lab, "san-b")) == volumes


@pytest.mark.parametrize("argv, shown", [
    (["target", "move", "eight", "san-z"], "san-z"),
    (["target", "move", "nosuch", "san-a"], "nosuch"),
    (["target", "move", "eight", "-"], "'-'"),
])
def test_bad_moves_are_refused_and_change_nothing(
        lab: Lab, applied: tuple[dict[str, Any], Initiator], argv: list[str],
        shown: str) -> None:
    epoch = cib_epoch(lab)
    result = iscsiha(lab, *argv)
    assert result.returncode == 1, result.out + result.err
    assert shown in result.err
    assert cib_epoch(lab) == epoch


def test_deleting_an_exported_volume_is_refused_even_when_confirmed(
        lab: Lab, applied: tuple[dict[str, Any], Initiator]) -> None:
    data = with_volume_size(applied[0], "solo", applied[0]["volumes"][0]["size"])
    data["volumes"] = [v for v in data["volumes"] if v["name"] != "solo"]
    data["targets"] = [t for t in data["targets"] if t["name"] != "one"]
    epoch = cib_epoch(lab)
    result = apply(lab, data, "--delete", "solo")
    assert result.returncode == 1
    assert "volume-in-use" in result.err and "target-one-lio" in result.err, result.err
    assert cib_epoch(lab) == epoch


def test_luns_join_and_leave_a_running_target_without_disturbing_the_others(
        lab: Lab, applied: tuple[dict[str, Any], Initiator]) -> None:
    """Two volumes join the target's running DRBD resource (metadata, no initial sync,
    promoted where the target runs) and leave it again in one apply (drbdadm adjust
    drops one removed volume per call); the other LUNs keep their I/O."""
    data, ini = applied
    data = with_volume_size(data, "solo", data["volumes"][0]["size"])
    if not _logged_in(ini, "eight"):
        ini.configure(iqn("eight"), EIGHT)
        ini.login(iqn("eight"), EIGHT, 8)
    disks = [f"/dev/{d}" for _, d in sorted(ini.disks(iqn("eight")).items())]
    where = target_on(lab, "eight")
    extras = {8: "extra8", 9: "extra9"}
    eight = next(t for t in data["targets"] if t["name"] == "eight")
    for lun, volume in extras.items():
        data["volumes"].append({"name": volume, "size": "32M"})
        eight["luns"].append({"lun": lun, "volume": volume})

    def applied_ok(*extra: str) -> str:
        result = apply(lab, data, *extra)
        assert result.ok, result.out + result.err
        return result.out.strip()

    def drbd_volumes_up_to_date(count: int) -> None:
        for box in ("san-a", "san-b"):
            status = lab.exec(box, ["drbdadm", "status", "eight"]).check().out
            # And the target's reservations volume.
            assert status.count(" disk:UpToDate") == status.count("peer-disk:UpToDate") \
                == count + 1, status

    joined = _under_io(ini, "join", disks, applied_ok)
    ini.run("iscsiadm", "-m", "session", "--rescan")
    wait_for("LUNs 8 and 9 at the initiator",
             lambda: set(extras) <= set(ini.disks(iqn("eight"))), timeout=60)
    for lun, volume in extras.items():
        new = f"/dev/{ini.disks(iqn('eight'))[lun]}"
        assert ini.identity(new)[0] == lun_identity(iqn("eight"), volume).serial
        ini.write_and_read_back(new)
    assert target_on(lab, "eight") == where
    drbd_volumes_up_to_date(10)
    for box in ("san-a", "san-b"):
        assert "sync'ed" not in lab.exec(box, ["cat", "/proc/drbd"]).check().out

    del eight["luns"][-len(extras):]
    left = _under_io(ini, "leave", disks, applied_ok)
    drbd_volumes_up_to_date(8)
    for box in ("san-a", "san-b"):
        assert set(extras.values()) <= set(lvs(lab, box).split())  # exported by no target
    data["volumes"] = [v for v in data["volumes"] if v["name"] not in extras.values()]
    applied_ok(*(arg for volume in extras.values() for arg in ("--delete", volume)))
    assert all(v not in lvs(lab, box) for box in ("san-a", "san-b") for v in extras.values())
    for what, r in (("join", joined), ("leave", left)):
        print(f"\ntwo LUNs {what} target eight: the 8 other LUNs paused {r['max_gap_s']} s, "
              f"{r['writes']} writes, {r['errors']} errors, {r['lost']} lost")
        assert r["errors"] == 0 and r["lost"] == 0 and r["unreadable"] == 0, r["error_text"]
        assert r["writes"] > 0


def test_a_deleted_target_leaves_its_volume_and_no_drbd_resource(
        lab: Lab, applied: tuple[dict[str, Any], Initiator]) -> None:
    data, ini = applied
    ini.try_run("sh", "-c", f"iscsiadm -m node -T {iqn('one')} --logout")
    data = with_volume_size(data, "solo", data["volumes"][0]["size"])
    data["targets"] = [t for t in data["targets"] if t["name"] != "one"]
    result = apply(lab, data)
    assert result.ok, result.out + result.err
    for box in ("san-a", "san-b"):
        gone = lab.exec(box, ["sh", "-c", "ls /etc/drbd.d; drbdadm status one"])
        assert "one.res" not in gone.out and gone.returncode != 0, gone.out + gone.err
        assert "solo" in lvs(lab, box)
    assert "drbd-one-clone" not in lab.exec("san-a", ["cibadmin", "--query"]).check().out
    data["volumes"] = [v for v in data["volumes"] if v["name"] != "solo"]
    result = apply(lab, data, "--delete", "solo")
    assert result.ok, result.out + result.err
    assert all("solo" not in lvs(lab, box) for box in ("san-a", "san-b"))
