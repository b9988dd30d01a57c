"""`iscsiha audit`, and the CLI's side of the audit log: which commands change state
(``audited``, set on their parsers) and the recorder main() wraps them in."""

from __future__ import annotations

import argparse
import json
import sys
from dataclasses import asdict

from iscsiha import audit
from iscsiha.commands import audit as audit_cmd
from iscsiha.commands import node_steps
from iscsiha.commands.cluster_env import Boxes, real_env
from iscsiha.errors import IscsihaError
from iscsiha.executors import files
from iscsiha.executors.audit_log import AuditLog
from iscsiha.model.fields import is_secret_key

EXIT_OK = 0


def add_parser(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = sub.add_parser("audit", help="who changed what through the CLI or the console, "
                                       "on this box (docs/audit.md)")
    p.add_argument("--since", metavar="TIME",
                   help="only records from TIME on: an ISO date or time, UTC unless it "
                        "says otherwise (2026-12-01, 2026-12-01T08:00)")
    p.add_argument("--json", action="store_true", help="the records as JSON, one a line")
    p.set_defaults(func=show)


def audited(args: argparse.Namespace) -> bool:
    """Whether the parsed command changes state (its parser's ``audited``: a bool, or a
    rule on the arguments such as apply's "not --dry-run")."""
    rule = getattr(args, "audited", False)
    return bool(rule(args)) if callable(rule) else bool(rule)


def given_secrets(args: argparse.Namespace) -> list[str]:
    """Secret values the command was given as arguments (refused, but not to be logged)."""
    return [v for k, v in vars(args).items()
            if (is_secret_key(k) or k == "token") and isinstance(v, str) and v != "-"]


def read_desired() -> str | None:
    raw = files.read(node_steps.DESIRED_PATH)
    return None if raw is None else raw.decode("utf-8", "replace")


def peer_boxes() -> Boxes | None:
    return real_env().boxes


def warn(message: str) -> None:
    print(f"iscsiha: warning: {message}", file=sys.stderr, flush=True)


def recorder() -> audit_cmd.Recorder:
    return audit_cmd.Recorder("cli", AuditLog(), read_desired, lambda: peer_boxes(), warn)


def show(args: argparse.Namespace) -> int:
    since = audit.parse_since(args.since, "--since")
    log = AuditLog()
    unreadable = 0
    try:
        for rec in audit_cmd.records(log, since):
            if rec is None:
                unreadable += 1
            elif args.json:
                print(json.dumps(asdict(rec), ensure_ascii=True))
            else:
                print(audit.shown(rec))
    except OSError as exc:
        raise IscsihaError.single("audit-unreadable", "audit log", log.path,
                                  "a file root may read", exc.strerror or str(exc)) from exc
    if unreadable:
        print(f"iscsiha: {unreadable} line(s) of {log.path} could not be read as records",
              file=sys.stderr)
    return EXIT_OK
