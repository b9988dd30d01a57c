"""`iscsiha`: validate and plan the desired state; check a box.

Exit codes: 0 success, 1 the request was refused (reports printed), 2 usage error.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from pathlib import Path

from iscsiha import __version__
from iscsiha.cli.report_format import format_reports
from iscsiha.commands import config as config_cmd
from iscsiha.commands.env import Env
from iscsiha.commands.selfcheck import selfcheck
from iscsiha.errors import IscsihaError, Report
from iscsiha.model.types import Config

EXIT_OK, EXIT_REFUSED, EXIT_USAGE = 0, 1, 2


def main(argv: Sequence[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    try:
        result: int = args.func(args)
        return result
    except IscsihaError as exc:  # the one error boundary
        print(format_reports(exc.reports), file=sys.stderr)
        return EXIT_REFUSED


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

    p = sub.add_parser("selfcheck", help="load the kernel modules the storage path needs")
    p.set_defaults(func=_selfcheck)
    return parser


def _read(path: Path) -> tuple[str, int]:
    try:
        return path.read_text(encoding="utf-8"), path.stat().st_mode
    except OSError as exc:
        raise IscsihaError.single("unreadable-file", "file", str(path),
                                  "a readable UTF-8 file", exc.strerror or str(exc)) from exc
    except UnicodeDecodeError as exc:
        raise IscsihaError.single("unreadable-file", "file", str(path),
                                  "a readable UTF-8 file", "is not UTF-8 text") from exc


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


def _selfcheck(args: argparse.Namespace) -> int:
    checks = selfcheck(Env.real(), lambda c: print(
        f"iscsiha selfcheck: {c.name}: {c.detail}", flush=True))
    failed = [c.name for c in checks if not c.ok]
    if failed:
        print(f"iscsiha selfcheck: FAILED: {', '.join(failed)}", flush=True)
        return EXIT_REFUSED
    print(f"iscsiha selfcheck: ok (iscsiha {__version__})", flush=True)
    return EXIT_OK


if __name__ == "__main__":
    sys.exit(main())
