"""`iscsiha-lab`: boot two appliance nodes, an initiator, a tiebreaker and BMCs on this machine.

Exit codes: 0 success, 1 refused or failed (reports printed), 2 usage error,
130 interrupted; `exec` exits with the guest command's own exit code.
"""

from __future__ import annotations

import argparse
import json
import random
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from iscsiha.errors import IscsihaError
from iscsiha.views import format_reports
from iscsiha_lab import (
    bench,
    console,
    console_setup,
    failover_bench,
    fault_timeline,
    initiator_root,
    lio_bench,
    soak,
    throughput_bench,
)
from iscsiha_lab.lab import Lab
from iscsiha_lab.paths import LabImages, LabPaths

EXIT_OK, EXIT_REFUSED, EXIT_USAGE, EXIT_INTERRUPTED = 0, 1, 2, 130


def progress(message: str) -> None:
    print(f"iscsiha-lab: {message}", file=sys.stderr, flush=True)


def main(argv: Sequence[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    lab = Lab(LabPaths.resolve(args.state_dir))
    try:
        result: int = args.func(lab, args)
        return result
    except IscsihaError as exc:  # the one error boundary
        print(format_reports(exc.reports), file=sys.stderr)
        return EXIT_REFUSED
    except KeyboardInterrupt:
        # `up` has already torn down what it started; other verbs change nothing half-way.
        print("iscsiha-lab: interrupted", file=sys.stderr)
        return EXIT_INTERRUPTED


def _images(args: argparse.Namespace) -> LabImages:
    return LabImages.resolve(args.image, args.runner, args.initiator_image)


def _add_image_options(p: argparse.ArgumentParser) -> None:
    p.add_argument("--image", type=Path, help="appliance root image, ext4 "
                   "(default $ISCSIHA_LAB_IMAGE or image/out/iscsiha-lab-root.ext4)")
    p.add_argument("--runner", type=Path, help="root directory holding usr/bin/linux.uml "
                   "(default $ISCSIHA_LAB_RUNNER or image/out/uml-runner)")
    p.add_argument("--initiator-image", type=Path, help="initiator root image, ext4 (default "
                   "$ISCSIHA_LAB_INITIATOR_IMAGE, else built once and cached)")


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="iscsiha-lab", description=__doc__.splitlines()[0])
    parser.add_argument("--state-dir", type=Path,
                        help="run directory (default $ISCSIHA_LAB_STATE_DIR or /run/iscsiha-lab)")
    sub = parser.add_subparsers(required=True, metavar="COMMAND")

    p = sub.add_parser("up", help="boot the lab and form the pair with `iscsiha cluster init` "
                                  "on the first box and `cluster join` on the second")
    _add_image_options(p)
    p.add_argument("--no-cluster", action="store_true",
                   help="boot the boxes as flashed, no cluster formed")
    p.set_defaults(func=_up)

    p = sub.add_parser("down", help="stop everything the lab started")
    p.set_defaults(func=_down)

    p = sub.add_parser("status", help="nodes, power, links and timings")
    p.add_argument("--json", action="store_true", help="machine-readable output")
    p.set_defaults(func=_status)

    p = sub.add_parser("exec", help="run a command in a node: exec NODE -- CMD [ARG...]")
    p.add_argument("node")
    p.add_argument("--timeout", type=float, default=300.0, help="seconds (default 300)")
    p.add_argument("--no-stdin", action="store_true",
                   help="do not pass our standard input (it is passed when not a terminal)")
    p.add_argument("command", nargs=argparse.REMAINDER)
    p.set_defaults(func=_exec)

    p = sub.add_parser("console", help="attach to a node's console (Ctrl-] leaves)")
    p.add_argument("node")
    p.set_defaults(func=_console)

    for verb, op, text in (
        ("kill", "power-off", "power cut: SIGKILL the node's UML process group"),
        ("power-on", "power-on", "boot a powered-off node"),
        ("freeze", "freeze", "SIGSTOP the node's kernel: it hangs, its links stay up"),
        ("thaw", "thaw", "SIGCONT a frozen node"),
        ("bmc-off", "bmc-off", "the node's BMC loses power (its simulator is killed)"),
        ("bmc-on", "bmc-on", "the node's BMC gets power back"),
    ):
        p = sub.add_parser(verb, help=text)
        p.add_argument("node")
        p.set_defaults(func=_power, op=op)

    p = sub.add_parser("trial-words", help="the appliance node's next trial boot of an A/B "
                       "slot gets these extra kernel words (then forgets them): "
                       "trial-words NODE -- WORD...; no words: forget them")
    p.add_argument("node")
    p.add_argument("words", nargs=argparse.REMAINDER)
    p.set_defaults(func=_trial_words)

    for verb, text in (("cut", "disconnect a network (for every node, or one)"),
                       ("heal", "reconnect a network (for every node, or one)")):
        p = sub.add_parser(verb, help=text)
        p.add_argument("link", help="mgmt, link0, link1, repl, storage or storage2")
        p.add_argument("node", nargs="?")
        p.set_defaults(func=_links, op=verb)

    p = sub.add_parser("bench", help="measure up time, replication link, data disk, fencing (JSON)")
    _add_image_options(p)
    p.add_argument("--no-fence", action="store_true", help="skip the fence off/on cycle")
    p.set_defaults(func=_bench)

    p = sub.add_parser("soak", help="inject random faults under the write verifier and a "
                                    "database on ext4 (JSON counts); takes the running "
                                    "lab's desired state over")
    p.add_argument("--faults", type=int, default=50, help="how many (default 50)")
    p.add_argument("--seed", type=int, default=None, help="repeat a run's sequence")
    p.add_argument("--max-minutes", type=float, default=150.0,
                   help="inject no new fault after this (default 150)")
    p.set_defaults(func=_soak)

    p = sub.add_parser("failover-bench", help="I/O pause of a planned move and a power cut "
                       "per LUN count, our agents against the stock ClusterLabs ones (JSON); "
                       "takes the running lab's desired state over")
    p.add_argument("--luns", default="1,8,64", help="LUN counts, comma-separated (default "
                   "1,8,64)")
    p.add_argument("--runs", type=int, default=3,
                   help="runs per agent set, LUN count and fault (default 3)")
    p.add_argument("--faults", default="move,power-cut",
                   help="move, power-cut, comma-separated (default both)")
    p.add_argument("--agents", default="ours,stock",
                   help="ours, stock, comma-separated (default both)")
    p.set_defaults(func=_failover_bench)

    p = sub.add_parser("fault-timeline", help="fault scenarios under the verifier, each "
                       "with its timeline and every phase's median (JSON); takes the running "
                       "lab's desired state over")
    p.add_argument("--scenarios", default="planned move,power cut",
                   help="comma-separated (default: planned move,power cut)")
    p.add_argument("--runs", type=int, default=3, help="runs of each (default 3)")
    p.set_defaults(func=_fault_timeline)

    p = sub.add_parser("lio-bench", help="time the LIO executor creating and removing one "
                       "target of N LUNs on a box, outside Pacemaker (JSON)")
    p.add_argument("--luns", default="1,64", help="LUN counts, comma-separated (default 1,64)")
    p.add_argument("--runs", type=int, default=3, help="runs of each (default 3)")
    p.set_defaults(func=_lio_bench)

    p = sub.add_parser("throughput-bench", help="fio through the LUN, the DRBD device and a "
                       "box-local LV, each as a ratio to the LV, and the LUN during a resync "
                       "(JSON); adds and removes a bench volume and target")
    p.add_argument("--runs", type=int, default=3, help="runs of every test (default 3)")
    p.add_argument("--runtime", type=int, default=10, help="seconds per fio test (default 10)")
    p.add_argument("--size-mib", type=int, default=512,
                   help="bench volume and scratch LV size (default 512)")
    p.add_argument("--no-resync", dest="resync", action="store_false",
                   help="skip the run during a resync")
    p.add_argument("--fill-mib", type=int, default=None, help="MiB written through the LUN "
                   "while the peer is away, resynced after (default: the bench region)")
    p.add_argument("--resync-timeout", type=int, default=600,
                   help="seconds the resync may take (default 600)")
    p.add_argument("--label", default="default", help="the variant's name, in the JSON")
    p.add_argument("--drbd", default="", help="e.g. max-buffers=8000,al-extents=3389 "
                   "(docs/throughput.md lists the names)")
    p.add_argument("--iscsi", default="", help="LIO TPG parameters, e.g. "
                   "MaxBurstLength=1048576")
    p.add_argument("--initiator", default="", help="open-iscsi node settings, e.g. "
                   "node.session.cmds_max=128")
    p.set_defaults(func=_throughput_bench)

    p = sub.add_parser("console-setup", help="on a lab up with --no-cluster: form the cluster "
                       "and export a volume to the initiator with console commands only, "
                       "printing each one")
    p.set_defaults(func=_console_setup)

    p = sub.add_parser("build-initiator", help="build (once) the cached initiator image")
    _add_image_options(p)
    p.set_defaults(func=_build_initiator)
    return parser


def _up(lab: Lab, args: argparse.Namespace) -> int:
    state = lab.up(_images(args), progress, form_cluster=not args.no_cluster)
    print(json.dumps({"phase": state.phase, "timings": state.timings}, indent=2))
    return EXIT_OK


def _down(lab: Lab, args: argparse.Namespace) -> int:
    if lab.state() is None:
        progress(f"no lab in {lab.paths.root}: nothing to stop")
    lab.down(progress)
    return EXIT_OK


def _status(lab: Lab, args: argparse.Namespace) -> int:
    status = lab.status()
    if args.json:
        print(json.dumps(status, indent=2))
    else:
        print(_format_status(status))
    return EXIT_OK


def _format_status(status: dict[str, Any]) -> str:
    if not status["running"]:
        text = f"no lab running in {status['state_dir']} (last phase: {status['phase']})"
        if status.get("orphans"):
            text += ("\n  its supervisor is gone but these still run: "
                     + ", ".join(status["orphans"]) + "\n  run `iscsiha-lab down` to stop them")
        return text
    lines = [f"lab in {status['state_dir']}: {status['phase']} "
             f"(supervisor pid {status['supervisor']}, tiebreaker {status['tiebreaker']})"]
    for name, node in status["nodes"].items():
        cut = [link for link, state in node["links"].items() if state == "cut"]
        lines.append(
            f"  {name:10} {node['role']:10} power={node['power']:7} "
            f"agent={'up' if node['agent'] else 'down':5}"
            + (f" bmc={node['bmc']}" if "bmc" in node else "")
            + (f" CUT: {', '.join(cut)}" if cut else ""))
    for name, svc in status["services"].items():
        lines.append(f"  {name:10} pid {svc['pid']} {'running' if svc['running'] else 'GONE'}")
    if status["timings"]:
        lines.append("  timings: " + ", ".join(f"{k}={v}" for k, v in status["timings"].items()))
    return "\n".join(lines)


def _exec(lab: Lab, args: argparse.Namespace) -> int:
    command = list(args.command)
    if command and command[0] == "--":
        command = command[1:]
    if not command:
        raise IscsihaError.single("empty-command", "command", "", "exec NODE -- CMD [ARG...]")
    data = None
    if not args.no_stdin and not sys.stdin.isatty():
        data = sys.stdin.buffer.read()
    result = lab.exec(args.node, command, input=data, timeout=args.timeout)
    sys.stdout.buffer.write(result.stdout)
    sys.stdout.flush()
    sys.stderr.buffer.write(result.stderr)
    sys.stderr.flush()
    return result.returncode


def _console(lab: Lab, args: argparse.Namespace) -> int:
    lab.topology.node(args.node)
    lab.require_running()
    console.attach(console.find_pts(lab.paths.console_log(args.node)))
    return EXIT_OK


def _power(lab: Lab, args: argparse.Namespace) -> int:
    answer = lab.power(args.op, args.node)
    progress(f"{args.node}: {answer.get('power')}")
    return EXIT_OK


def _trial_words(lab: Lab, args: argparse.Namespace) -> int:
    words = list(args.words)
    if words and words[0] == "--":
        words = words[1:]
    answer = lab.trial_words(args.node, words)
    progress(f"{args.node}: next trial boot's extra words: "
             f"{' '.join(answer['trial_words']) or 'none'}")
    return EXIT_OK


def _links(lab: Lab, args: argparse.Namespace) -> int:
    answer = lab.links(args.op, args.link, args.node)
    progress(f"{args.op} {args.link}: {', '.join(answer['taps'])}")
    return EXIT_OK


def _bench(lab: Lab, args: argparse.Namespace) -> int:
    figures = bench.run(lab, _images(args), progress, fence=not args.no_fence)
    print(json.dumps(figures, indent=2))
    return EXIT_OK


def _soak(lab: Lab, args: argparse.Namespace) -> int:
    if args.faults < 1:
        raise IscsihaError.single("bad-fault-count", "--faults", str(args.faults),
                                  "a count of 1 or more")
    lab.require_running()
    seed = args.seed if args.seed is not None else random.randrange(2**32)
    tally = soak.soak(lab, args.faults, seed, args.max_minutes, progress)
    print(json.dumps(tally, indent=2))
    return EXIT_OK if tally["failure"] is None else EXIT_REFUSED


def _failover_bench(lab: Lab, args: argparse.Namespace) -> int:
    options = failover_bench.parse_options(args.luns, args.runs, args.faults, args.agents)
    report = failover_bench.bench(lab, options, progress)
    print(json.dumps(report, indent=2))
    # Failed runs are measurements (in the JSON); only a benchmark cut short is a failure.
    return EXIT_OK if report["aborted"] is None else EXIT_REFUSED


def _fault_timeline(lab: Lab, args: argparse.Namespace) -> int:
    scenarios = fault_timeline.parse_scenarios(args.scenarios, args.runs)
    lab.require_running()
    report = fault_timeline.run(lab, scenarios, args.runs, progress)
    print(json.dumps(report, indent=2))
    return EXIT_OK if report["failure"] is None else EXIT_REFUSED


def _lio_bench(lab: Lab, args: argparse.Namespace) -> int:
    report = lio_bench.bench(lab, lio_bench.parse_options(args.luns, args.runs), args.runs,
                             progress)
    print(json.dumps(report, indent=2))
    return EXIT_OK


def _throughput_bench(lab: Lab, args: argparse.Namespace) -> int:
    options = throughput_bench.parse_options(
        args.runs, args.runtime, args.size_mib, args.resync, args.fill_mib,
        args.resync_timeout, args.label, args.drbd, args.iscsi, args.initiator)
    report = throughput_bench.bench(lab, options, progress)
    print(json.dumps(report, indent=2))
    return EXIT_OK if report["aborted"] is None else EXIT_REFUSED


def _console_setup(lab: Lab, args: argparse.Namespace) -> int:
    console_setup.setup(lab, lambda line: print(line, flush=True))
    return EXIT_OK


def _build_initiator(lab: Lab, args: argparse.Namespace) -> int:
    images = _images(args)
    if images.initiator_image is not None:
        progress(f"--initiator-image given ({images.initiator_image}): nothing to build")
        return EXIT_OK
    print(initiator_root.build(images.runner, images.kernel_version(), progress))
    return EXIT_OK


if __name__ == "__main__":
    sys.exit(main())
