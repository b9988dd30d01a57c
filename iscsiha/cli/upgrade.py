"""`iscsiha upgrade`: this box's A/B root slots (docs/upgrade.md).

Box-local: stage a new root into the standby slot and arm one trial boot of it, show
the slots, cancel an armed trial, and mark the booted trial good once it is healthy
(what iscsiha-boot-good.service runs at boot); and the pair's rolling upgrade.
"""

from __future__ import annotations

import argparse
import json
import socket
import sys
import time

from iscsiha.commands import (
    cluster_env,
    upgrade_boot,
    upgrade_pair,
    upgrade_resume,
    upgrade_stage,
    upgrade_status,
    upgrade_steps,
)
from iscsiha.commands.upgrade_env import real_env
from iscsiha.errors import IscsihaError
from iscsiha.executors.systemd import Systemd
from iscsiha.model.names import check_timeout
from iscsiha.views import format_report

EXIT_OK, EXIT_REFUSED = 0, 1
RESUME_TIMEOUT = 1200.0  # a box's boot to online in the cluster, with its peer's help
DISK_HELP = ("work on this whole disk (a spare boot disk, or an image on a loop device) "
             "instead of the one the box runs from")


def add_parser(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = sub.add_parser("upgrade", help="this box's root slots A and B: stage a new root, "
                                       "its trial boot, status (docs/upgrade.md)")
    usub = p.add_subparsers(required=True, metavar="ACTION")
    s = usub.add_parser("stage", help="check FILE (FILE.sha256, FILE.json), write it to the "
                                      "standby root slot, read it back, carry this box's "
                                      "state into it and arm one trial boot of it")
    s.add_argument("file", help="the root image from image/build (iscsiha-root.img)")
    s.add_argument("--disk", metavar="DEVICE",
                   help=f"{DISK_HELP}; this box's state is not carried onto it (the disk "
                        "may go into another box)")
    s.add_argument("--no-carry", action="store_true",
                   help="leave the new root as published, without this box's state: it "
                        "boots like a freshly flashed box (for tests by hand)")
    # The record goes in this box's audit log; a spare disk's staging is not this box's.
    s.set_defaults(func=_stage, audited=lambda a: a.disk is None)
    s = usub.add_parser("status", help="the slots: booted, good, the trial armed or how the "
                                       "last one ended, each slot's version")
    s.add_argument("--json", action="store_true", help="the same as JSON")
    s.add_argument("--disk", metavar="DEVICE", help=DISK_HELP)
    s.set_defaults(func=_status)
    s = usub.add_parser("cancel", help="disarm the armed trial boot: the next boot takes the "
                                       "good slot")
    s.add_argument("--disk", metavar="DEVICE", help=DISK_HELP)
    s.set_defaults(func=_cancel, audited=lambda a: a.disk is None)
    s = usub.add_parser("mark-good", help="mark the booted trial slot good if the box is "
                                          "healthy (iscsiha-boot-good.service runs it)")
    s.add_argument("--reboot-if-unhealthy", action="store_true",
                   help="reboot a trial that is not healthy, so GRUB boots the good slot")
    s.set_defaults(func=_mark_good)
    s = usub.add_parser("pair", help="rolling upgrade of both boxes to FILE: the other box "
                                     "first, then this one; each is staged, put in standby "
                                     "(its targets move), rebooted into the new root and "
                                     "brought back")
    s.add_argument("file", help="the root image from image/build (iscsiha-root.img), with "
                                "its .sha256 and .json beside it")
    s.set_defaults(func=_pair, audited=lambda a: True)
    s = usub.add_parser("resume", help="at boot, finish this box's part of a pair upgrade: "
                                       "record how it ended, leave standby "
                                       "(iscsiha-upgrade-resume.service runs it)")
    s.add_argument("--timeout", type=float, default=RESUME_TIMEOUT,
                   help="seconds to wait for this box to be online in the cluster "
                        f"(default {RESUME_TIMEOUT:.0f})")
    s.set_defaults(func=_resume)


def _pair(args: argparse.Namespace) -> int:
    start = time.monotonic()

    def say(message: str) -> None:  # it runs for many minutes: each line says when
        _say(f"[{time.monotonic() - start:5.0f} s] {message}")
    done = upgrade_pair.upgrade_pair(real_env(), cluster_env.real_env(), args.file, say)
    print(upgrade_pair.summary(done))
    return EXIT_OK


def _resume(args: argparse.Namespace) -> int:
    check_timeout(args.timeout)
    done = upgrade_resume.resume(real_env(), cluster_env.real_env(), socket.gethostname(),
                                 args.timeout, _say)
    if done is not None:
        print(f"iscsiha upgrade: {done.state}: {done.note}", flush=True)
    return EXIT_OK


def _say(message: str) -> None:
    print(f"iscsiha upgrade: {message}", file=sys.stderr, flush=True)


def _stage(args: argparse.Namespace) -> int:
    carry = not args.no_carry and args.disk is None
    if not carry:
        _say("this box's state is not carried: the new root boots like a freshly flashed box"
             + (" (--disk)" if args.disk is not None and not args.no_carry else ""))
    staged = upgrade_stage.stage(real_env(args.disk), args.file, _say, carry=carry)
    r = staged.manifest.release
    state = ("without this box's state" if staged.carried is None
             else f"with this box's state ({staged.carried.files} files)")
    print(f"staged iscsiha {r.version} (commit {r.commit}, root {r.root_uuid}) in slot "
          f"{staged.slot} ({staged.partition}) {state} in {staged.seconds:.0f} s; the next "
          f"boot tries it once, and it stays only if iscsiha-boot-good.service marks it good")
    return EXIT_OK


def _status(args: argparse.Namespace) -> int:
    env = real_env(args.disk)
    st = upgrade_status.status(env)
    # The pair upgrade's record is this running box's, not a spare disk's. A damaged
    # one is reported, and the slots are still shown.
    record, problem = None, None
    if args.disk is None:
        try:
            record = upgrade_steps.read_record(env)
        except IscsihaError as exc:
            problem = format_report(exc.reports[0]).splitlines()[0]
    pair: dict[str, object] | None = None if record is None else {
        "state": record.state, "to": record.release.version,
        "left_standby": record.left_standby, "note": record.note}
    if args.json:
        print(json.dumps({**st.as_dict(), "pair_upgrade": pair or (
            {"problem": problem} if problem else None)}, indent=2))
    else:
        print("\n".join(upgrade_status.status_lines(st)))
        if record is not None:
            print(f"pair upgrade: {record.state} (to iscsiha {record.release.version})"
                  + (f": {record.note}" if record.note else ""))
        elif problem:
            print(f"pair upgrade: unreadable record: {problem}")
    return EXIT_OK


def _cancel(args: argparse.Namespace) -> int:
    was = upgrade_stage.cancel(real_env(args.disk))
    print("nothing was armed" if was is None
          else f"disarmed the trial of slot {was.trial}: the next boot takes slot {was.good}")
    return EXIT_OK


def _mark_good(args: argparse.Namespace) -> int:
    systemd = Systemd()
    check = upgrade_boot.mark_good(real_env(), systemd.active_state)
    if check.outcome == "already-good":
        print(f"iscsiha upgrade: booted slot {check.booted} is the good slot", flush=True)
        return EXIT_OK
    if check.outcome == "marked-good":
        print(f"iscsiha upgrade: slot {check.booted} is healthy and now the good slot",
              flush=True)
        return EXIT_OK
    print(f"iscsiha upgrade: trial of slot {check.booted} NOT healthy: "
          f"{'; '.join(check.problems)}", flush=True)
    if args.reboot_if_unhealthy:
        print(f"iscsiha upgrade: rebooting: GRUB boots the good slot {check.good} again",
              flush=True)
        systemd.reboot()
    return EXIT_REFUSED
