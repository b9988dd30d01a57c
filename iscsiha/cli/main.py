"""`iscsiha`: validate, plan, apply the desired state; show and move targets; split brain.

Exit codes: 0 success, 1 the request was refused (reports printed), 2 usage error,
70 a bug in iscsiha (the traceback printed, to be reported).
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import shlex
import sys
from collections.abc import Sequence
from pathlib import Path

from iscsiha import __version__, metrics
from iscsiha.cli import audit as audit_cli
from iscsiha.cli import cluster as cluster_cli
from iscsiha.cli import network as network_cli
from iscsiha.cli import upgrade as upgrade_cli
from iscsiha.cli.confirm import NOT_CONFIRMED, approve_losses
from iscsiha.commands import apply as apply_cmd
from iscsiha.commands import config as config_cmd
from iscsiha.commands import node_steps, support_bundle
from iscsiha.commands import split_brain as split_brain_cmd
from iscsiha.commands import standby as standby_cmd
from iscsiha.commands import targets as targets_cmd
from iscsiha.commands import timeline as timeline_cmd
from iscsiha.commands import verify as verify_cmd
from iscsiha.commands.apply_preview import preview
from iscsiha.commands.cluster_env import ClusterEnv, real_env
from iscsiha.commands.selfcheck import selfcheck
from iscsiha.commands.targets import ClusterStatus
from iscsiha.errors import IscsihaError, Report, bug_report
from iscsiha.executors import files
from iscsiha.executors.drbd import Drbd
from iscsiha.executors.runner import Runner
from iscsiha.model.names import parse_decimal
from iscsiha.model.types import Config
from iscsiha.plan.peer_ssh import ISCSIHA
from iscsiha.protocol import codec
from iscsiha.protocol.version import PROTOCOL_MAX
from iscsiha.status_report import SCHEMA, Health, as_json, assess
from iscsiha.views import (
    format_report,
    format_reports,
    resolution_text,
    split_brain_text,
    status_lines,
    timeline_lines,
)

EXIT_OK, EXIT_REFUSED, EXIT_USAGE, EXIT_BUG, EXIT_INTERRUPTED = 0, 1, 2, 70, 130
EXIT_BROKEN_PIPE = 141  # as a shell reports a process SIGPIPE ended
FROM_PEER = "from-peer"


def main(argv: Sequence[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    typed = sys.argv if argv is None else ["iscsiha", *argv]
    if not audit_cli.audited(args):
        return _dispatch(args, typed)[0]
    recorder = audit_cli.recorder()
    started = recorder.begin(typed, audit_cli.given_secrets(args))
    code, failure = _dispatch(args, typed)
    recorder.end(started, failure, code)
    return code


def _dispatch(args: argparse.Namespace, typed: Sequence[str]
              ) -> tuple[int, BaseException | None]:
    """The exit code, and what ended the command when it did not succeed."""
    try:
        result: int = args.func(args)
        return result, None
    except IscsihaError as exc:  # the one error boundary
        print(format_reports(exc.reports), file=sys.stderr)
        # An apply that would take something from initiators, given no --yes and no
        # terminal to ask at, is a usage error: the same command with --yes goes on.
        return (EXIT_USAGE if exc.reports[0].code == NOT_CONFIRMED else EXIT_REFUSED), exc
    except KeyboardInterrupt as exc:
        print("iscsiha: interrupted", file=sys.stderr)
        return EXIT_INTERRUPTED, exc
    except BrokenPipeError as exc:
        # Whoever read stdout stopped (`| head`): no bug, and no second error when
        # Python flushes stdout at exit.
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return EXIT_BROKEN_PIPE, exc
    except Exception as exc:  # anything else is ours to fix: say so, with what we need
        print(bug_report(" ".join(typed)), file=sys.stderr)
        return EXIT_BUG, exc


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="iscsiha", description=__doc__.splitlines()[0])
    parser.add_argument("--version", action="version", version=f"iscsiha {__version__}")
    sub = parser.add_subparsers(required=True, metavar="COMMAND")

    p = sub.add_parser("validate", help="check a desired-state file and report every problem")
    p.add_argument("file", type=Path, help="the desired-state file (TOML)")
    p.set_defaults(func=_validate)

    p = sub.add_parser("plan",
                       help="print the CIB fragment and each node's corosync and DRBD files")
    p.add_argument("file", type=Path, help="the desired-state file (TOML)")
    p.add_argument("--previous", type=Path, metavar="CIB",
                   help="a CIB (cibadmin -Q, or an earlier plan) whose DRBD minors and "
                        "ports are kept")
    p.add_argument("--output-dir", type=Path, metavar="DIR",
                   help="write cib.xml and NODE/etc/... files there instead of printing")
    p.set_defaults(func=_plan)

    p = sub.add_parser("apply", help="make the running cluster match a desired-state file")
    p.add_argument("file", type=Path, help="the desired-state file (TOML)")
    p.add_argument("--delete", action="append", default=[], metavar="VOLUME",
                   help="confirm deleting VOLUME and its data on both boxes (repeatable)")
    p.add_argument("--dry-run", action="store_true",
                   help="check everything and say what would change (volumes, targets, "
                        "LUNs, portals, initiators, auth, placement); change nothing")
    p.add_argument("--yes", action="store_true",
                   help="go on when initiators would lose a target, LUN, portal, allowed "
                        "initiator or their authentication (asked on a terminal; refused, "
                        "exit 2, without one)")
    p.set_defaults(func=_apply, audited=lambda a: not a.dry_run)

    p = sub.add_parser("status", help="nodes, quorum, fencing, where each target runs "
                                        "(and its sessions), each volume's DRBD state; "
                                        "exits 0 healthy, 1 degraded, 2 not serving, "
                                        "3 unknown (the cluster could not be asked)")
    p.add_argument("--json", action="store_true",
                   help="the same as JSON (docs/status.md; schema 1)")
    p.add_argument("--sessions", action="store_true",
                   help="also each target's initiator sessions (asks the box serving it)")
    p.add_argument("--timeline", action="store_true",
                   help="also the last failover or move: when the peer was lost, fenced, "
                        "the target promoted and served, the first initiator back (from "
                        "both boxes' journals; the peer's only if it answers)")
    p.set_defaults(func=_status)

    p = sub.add_parser("metrics", help="the cluster's state as Prometheus metrics "
                                         "(docs/status.md), for node-exporter's textfile "
                                         "collector")
    p.add_argument("--textfile", type=Path, metavar="PATH",
                   help="write them to PATH (replaced atomically, as the collector "
                        "needs) instead of printing them")
    p.add_argument("--sessions", action="store_true",
                   help="also each target's session count (asks the box serving it)")
    p.set_defaults(func=_metrics)

    p = sub.add_parser("target", help="act on a running target")
    tsub = p.add_subparsers(required=True, metavar="ACTION")
    m = tsub.add_parser("move", help="planned move of a target (its address and LUNs) "
                                     "to the other box")
    m.add_argument("name", help="the target's name")
    m.add_argument("node", help="the node to move it to")
    m.add_argument("--timeout", type=float, default=300.0, metavar="SECONDS",
                   help="how long to wait for it to run there (default 300)")
    m.set_defaults(func=_move, audited=True)

    for verb, on, what in (("standby", True, "put a box in standby for maintenance: its "
                                              "targets move to the other box and stay there"),
                           ("unstandby", False, "bring a box back from standby: targets with "
                                                "failback = auto return to it")):
        p = sub.add_parser(verb, help=what)
        p.add_argument("node", help="the node (box)")
        p.add_argument("--timeout", type=float, default=300.0, metavar="SECONDS",
                       help="how long to wait for the cluster to settle (default 300)")
        p.set_defaults(func=_standby, on=on, audited=True)

    p = sub.add_parser("split-brain",
                       help="list volumes in DRBD split brain; resolve one by discarding "
                            "one box's changes")
    p.add_argument("volume", nargs="?",
                   help="the volume to show or resolve (default: every volume in split brain)")
    p.add_argument("--discard", metavar="NODE",
                   help="the box whose changes to VOLUME are thrown away: it resyncs from "
                        "the other box")
    p.add_argument("--yes", action="store_true",
                   help="do not ask to type the volume name before discarding")
    p.add_argument("--timeout", type=float, default=600.0, metavar="SECONDS",
                   help="how long to wait for the resync to finish (default 600)")
    p.set_defaults(func=_split_brain, audited=lambda a: a.discard is not None)

    p = sub.add_parser("support-bundle",
                       help="collect both boxes' cluster, DRBD, LIO and corosync state, "
                            "journals and versions into one .tar.gz for a maintainer, every "
                            "secret removed (docs/support.md)")
    p.add_argument("--since", default=support_bundle.DEFAULT_SINCE, metavar="TIME",
                   help="journal from TIME: YYYY-MM-DD or 'YYYY-MM-DD HH:MM', today, yesterday, or "
                        "back from now as 30min, 6h, 2d (default "
                        f"{support_bundle.DEFAULT_SINCE})")
    p.add_argument("--output", metavar="FILE",
                   help="where to write it (mode 0600; default "
                        f"{support_bundle.DEFAULT_FOLDER}/iscsiha-support-NODE-TIME.tar.gz)")
    p.set_defaults(func=_support_bundle)

    p = sub.add_parser("verify",
                       help="DRBD online verify of the volumes this box serves, one "
                            "resource at a time; a difference found raises an alert and "
                            "exits 1 (docs/support.md)")
    p.add_argument("--scheduled", action="store_true",
                   help="only when the desired state's [maintenance] verify schedule says "
                        "a run is due (what iscsiha-verify.timer runs daily)")
    p.add_argument("--timeout", type=float, default=verify_cmd.DEFAULT_TIMEOUT,
                   metavar="SECONDS", help="how long to wait for each resource "
                                           f"(default {verify_cmd.DEFAULT_TIMEOUT:.0f})")
    p.set_defaults(func=_verify)

    # apply's steps on each box, not the admin's. No help= at all: argparse lists a
    # subcommand given help=SUPPRESS as "==SUPPRESS==", and one without help not at all.
    p = sub.add_parser("node")
    p.add_argument("step", choices=[*sorted(node_steps.STEPS), FROM_PEER])
    p.add_argument("--protocol", default=None)  # checked as the peer's words are
    p.set_defaults(func=_node_step)

    p = sub.add_parser("selfcheck", help="load the kernel modules the storage path needs")
    p.set_defaults(func=_selfcheck)

    cluster_cli.add_parser(sub)  # cluster init / join / token
    audit_cli.add_parser(sub)
    network_cli.add_parser(sub)  # this box's networks
    upgrade_cli.add_parser(sub)  # this box's root slots A and B
    return parser


def _read(path: Path) -> tuple[str, int]:
    text = files.read_text(str(path))
    return text, path.stat().st_mode


def _load(path: Path) -> Config:
    text, mode = _read(path)
    config, warnings = config_cmd.validate(text, str(path), mode=mode)
    _warn(warnings)
    return config


def _warn(warnings: list[Report]) -> None:
    if warnings:
        print(format_reports(warnings), file=sys.stderr)


def _validate(args: argparse.Namespace) -> int:
    config = _load(args.file)
    print(f"{args.file}: valid: cluster {config.cluster.name}, {len(config.volumes)} volumes, "
          f"{len(config.targets)} targets, "
          f"{sum(len(t.luns) for t in config.targets)} LUNs")
    return EXIT_OK


def _plan(args: argparse.Namespace) -> int:
    config = _load(args.file)
    previous = _read(args.previous)[0] if args.previous else None
    plan = config_cmd.plan(config, previous)
    kept = sorted(f"{rsc} {param}" for rsc, param in plan.secrets)
    if args.output_dir:
        out: Path = args.output_dir
        out.mkdir(parents=True, exist_ok=True)
        (out / "cib.xml").write_text(plan.cib)
        for node, files in plan.node_files.items():
            for f in files:
                dest = out / node / f.path.lstrip("/")
                dest.parent.mkdir(parents=True, exist_ok=True)
                dest.write_text(f.content)
                dest.chmod(f.mode)
        print(f"wrote {out}/cib.xml and files for {', '.join(plan.node_files)}")
    else:
        print("# ---- CIB configuration ----")
        print(plan.cib, end="")
        for node, files in plan.node_files.items():
            for f in files:
                print(f"# ---- {node}:{f.path} ----")
                print(f.content, end="")
    print(f"# secrets kept out of the CIB ({len(kept)}): {', '.join(kept)}",
          file=sys.stderr if args.output_dir is None else sys.stdout)
    return EXIT_OK


def _progress(message: str) -> None:
    print(f"iscsiha: {message}", file=sys.stderr, flush=True)


def _apply(args: argparse.Namespace) -> int:
    text, mode = _read(args.file)
    config, warnings = config_cmd.validate(text, str(args.file), mode=mode)
    _warn(warnings)
    if args.dry_run:
        checked = apply_cmd.check(real_env(config=config), config, frozenset(args.delete),
                                  _progress)
        print("\n".join(preview(checked)))
        return EXIT_OK
    changes = apply_cmd.apply(real_env(config=config), config, text, frozenset(args.delete),
                              _progress, None if args.yes else approve_losses)
    print(f"applied: {len(changes.create)} volume(s) created, {len(changes.grow)} grown, "
          f"{len(changes.delete)} deleted; cluster configuration "
          f"{'changed' if changes.cib_changed else 'unchanged'}")
    return EXIT_OK


def _status(args: argparse.Namespace) -> int:
    """Exit codes for monitoring (status_report.Health), not the usual 1 for an error."""
    try:
        env = real_env()
        state = targets_cmd.live_status(env, sessions=args.sessions)
    except IscsihaError as exc:
        if args.json:
            print(json.dumps({"schema": SCHEMA, "health": Health.UNKNOWN.word,
                              "exit_code": Health.UNKNOWN.value,
                              "reasons": [format_report(r) for r in exc.reports]}, indent=2))
        else:
            print(format_reports(exc.reports), file=sys.stderr)
        return Health.UNKNOWN.value
    health, reasons = assess(state)
    timeline = None
    if args.timeline:
        report = timeline_cmd.last_timeline(env, {t.name: t.iqn for t in state.targets})
        timeline = timeline_lines(report)
    if args.json:
        out = as_json(state)
        if timeline is not None:
            out["timeline"] = timeline
        print(json.dumps(out, indent=2))
        return health.value
    print("\n".join(status_lines(state)))
    print(f"health  {health.word.upper()}" + "".join(f"\n  - {r}" for r in reasons))
    if timeline is not None:
        print("\n".join(["", *timeline]))
    return health.value


def _metrics(args: argparse.Namespace) -> int:
    """iscsiha_up 0 when the cluster cannot be asked: a monitor sees that, not a gap."""
    try:
        state: ClusterStatus | None = targets_cmd.live_status(real_env(), sessions=args.sessions)
    except IscsihaError as exc:
        print(format_reports(exc.reports), file=sys.stderr)
        state = None
    text = metrics.render(state) + metrics.verify_metrics(verify_cmd.last_record(files.read))
    if args.textfile is None:
        print(text, end="")
        return EXIT_OK
    try:
        files.write_atomic(str(args.textfile), text.encode())
    except OSError as exc:
        raise IscsihaError.single("unwritable-file", "file", str(args.textfile),
                                  "a file root may write", exc.strerror or str(exc)) from exc
    return EXIT_OK


def _standby(args: argparse.Namespace) -> int:
    targets = standby_cmd.standby(real_env(), args.node, args.on, args.timeout, _progress)
    for t in targets:
        print(f"target {t.name} on {', '.join(t.running_on) or 'no node'}"
              f"{'' if t.healthy else ' (not fully started)'}")
    return EXIT_OK


def _move(args: argparse.Namespace) -> int:
    seconds = targets_cmd.move(real_env(), args.name, args.node, args.timeout, _progress)
    print(f"target {args.name} runs on {args.node} ({seconds:.1f} s)")
    return EXIT_OK


def _support_bundle(args: argparse.Namespace) -> int:
    support_bundle.checked_since(args.since)  # before minutes of collecting
    box = node_steps.Box(Runner())
    output = args.output or support_bundle.default_output(box.hostname(), box.wall_clock())
    data = support_bundle.make(box, real_env().boxes, args.since, _progress)
    support_bundle.write(output, data)
    print(f"wrote {output} ({len(data)} bytes)")
    return EXIT_OK


def _verify(args: argparse.Namespace) -> int:
    if not 0 < args.timeout <= 7 * 86400:
        print("iscsiha verify: --timeout is seconds, more than 0 and at most 604800",
              file=sys.stderr)
        return EXIT_USAGE
    schedule = _load(Path(node_steps.DESIRED_PATH)).maintenance.verify if args.scheduled \
        else None
    env = verify_cmd.VerifyEnv(Drbd(Runner()), Runner(), files.read,
                               lambda path, data: files.write_atomic(path, data, 0o644))
    record = verify_cmd.run(env, schedule, args.timeout, _progress)
    bad = verify_cmd.failed(record) if record else []
    if bad:
        print(f"iscsiha verify: not verified identical: {', '.join(bad)}", file=sys.stderr)
        return EXIT_REFUSED
    return EXIT_OK


def _split_brain_env() -> ClusterEnv:
    """This box, and both boxes as the desired state that apply wrote names them."""
    return real_env(config=_load(Path(node_steps.DESIRED_PATH)))


def _split_brain(args: argparse.Namespace) -> int:
    if args.discard is None and args.yes:
        print("iscsiha split-brain: --yes goes with --discard NODE", file=sys.stderr)
        return EXIT_USAGE
    if args.discard is not None and args.volume is None:
        print("iscsiha split-brain: --discard needs the VOLUME to resolve", file=sys.stderr)
        return EXIT_USAGE
    env = _split_brain_env()
    if args.discard is None:
        states = split_brain_cmd.survey(env, [args.volume] if args.volume else None)
        shown = states if args.volume else [s for s in states if s.split_brain]
        if not shown:
            print(f"no volume is in split brain ({len(states)} checked on "
                  f"{' and '.join(env.both_boxes().names)})")
            return EXIT_OK
        print("\n\n".join(split_brain_text(s) for s in shown))
        return EXIT_OK
    choice = split_brain_cmd.choose(env, args.volume, args.discard)
    print(split_brain_text(choice.state))
    print(f"\nThis throws away every change {args.discard} made to {args.volume} while the "
          f"boxes were apart, and copies {choice.keep.node}'s data over it.", flush=True)
    if not args.yes and not _typed(args.volume):
        raise IscsihaError.single("not-confirmed", "volume", args.volume,
                                  f"typing {args.volume} at the prompt, or --yes",
                                  "was not confirmed")
    result = split_brain_cmd.resolve(env, args.volume, args.discard, _progress, args.timeout)
    print(resolution_text(result))
    return EXIT_OK


def _typed(volume: str) -> bool:
    """The admin typed the volume's name: the only answer that goes on."""
    try:
        answer = input(f"Type the volume name ({volume}) to go on: ")
    except EOFError:  # no terminal and no --yes
        return False
    return answer.strip() == volume


def _node_step(args: argparse.Namespace) -> int:
    """A typed request on stdin, its reply (or reports) as JSON on stdout."""
    try:
        if args.step == FROM_PEER:
            step, protocol = _peer_step()
        else:
            step, protocol = args.step, _protocol(args.protocol)
    except IscsihaError as exc:
        print(codec.reports_json(exc.reports))
        return EXIT_REFUSED
    box = node_steps.Box(Runner())
    if step in node_steps.STREAMED:  # one request line, then the data the step reads
        raw = sys.stdin.buffer.readline(codec.MESSAGE_BYTES_MAX + 1)
        box = dataclasses.replace(box, stream=sys.stdin.buffer)
    else:
        raw = sys.stdin.buffer.read(codec.MESSAGE_BYTES_MAX + 1)
    ok, out = node_steps.serve(box, step, raw, protocol)
    print(out)
    return EXIT_OK if ok else EXIT_REFUSED


def _protocol(word: str | None) -> int | None:
    if word is None:
        return None
    number = parse_decimal(word, 0, PROTOCOL_MAX)
    if number is None:
        raise IscsihaError.single("peer-protocol", "--protocol", word,
                                  f"a whole number 0 to {PROTOCOL_MAX}")
    return number


def _peer_step() -> tuple[str, int | None]:
    """The step the peer asked for over SSH (the cluster key forces this command), and
    the protocol its request is written in."""
    asked = os.environ.get("SSH_ORIGINAL_COMMAND", "")
    try:
        words = shlex.split(asked)
    except ValueError:
        words = []
    if (len(words) in (3, 5) and words[:2] == [ISCSIHA, "node"]
            and words[2] in node_steps.STEPS and words[3:4] in ([], ["--protocol"])):
        return words[2], _protocol(words[4] if len(words) == 5 else None)
    raise IscsihaError.single("peer-command-refused", "command", asked,
                              f"{ISCSIHA} node STEP [--protocol N], STEP one of "
                              f"{', '.join(node_steps.STEPS)}")


def _selfcheck(args: argparse.Namespace) -> int:
    checks = selfcheck(real_env(), lambda c: print(
        f"iscsiha selfcheck: {c.name}: {c.detail}", flush=True))
    failed = [c.name for c in checks if not c.ok]
    if failed:
        print(f"iscsiha selfcheck: FAILED: {', '.join(failed)}", flush=True)
        return EXIT_REFUSED
    print(f"iscsiha selfcheck: ok (iscsiha {__version__})", flush=True)
    return EXIT_OK


if __name__ == "__main__":
    sys.exit(main())
