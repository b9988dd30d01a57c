"""`iscsiha-console`: the appliance's admin shell.

Interactive without arguments; with arguments, runs them as one command line
(`iscsiha-console /volumes create name=db size=100G`) and exits 0 on success,
1 when the request was refused (reports printed, as by `iscsiha`), 2 on a usage
error.
"""

from __future__ import annotations

import argparse
import getpass
import inspect
import sys
import traceback
import warnings
from collections.abc import Iterator, Sequence
from contextlib import contextmanager, suppress
from pathlib import Path
from typing import Any, TextIO

from configshell_fb import ConfigShell, Console, ExecutionError
from pyparsing import ParseException

from iscsiha.commands.audit import Recorder, Started
from iscsiha.console import lines
from iscsiha.console.files import BACKUP_DIR, DESIRED_PATH, Backups
from iscsiha.console.state import Backend, State
from iscsiha.console.tree import RootNode
from iscsiha.errors import IscsihaError
from iscsiha.views import format_reports

EXIT_OK, EXIT_REFUSED, EXIT_USAGE = 0, 1, 2
WITHHELD = "<the rest withheld: the line looked like it held a secret>"
# Commands that change nothing: the audit log leaves them out.
READ_ONLY = frozenset({"ls", "cd", "pwd", "help", "exit", "bookmarks", "get", "status",
                       "audit"})
PREFERENCES_DIR = "~/.iscsiha-console"


class ConsoleShell(ConfigShell):  # type: ignore[misc]
    """configshell's shell with the console's one error boundary around every command."""

    _current_node: Any
    _exit: bool

    def __init__(self, state: State, preferences_dir: str | None = None,
                 out: TextIO | None = None, err: TextIO | None = None,
                 recorder: Recorder | None = None) -> None:
        with _quiet_configshell():
            super().__init__(preferences_dir)
        # configshell logs every command line to a file; set commands carry CHAP secrets.
        self.prefs["logfile"] = None
        if preferences_dir is not None:
            scrub_history(Path(preferences_dir).expanduser() / "history.txt")
        self.con = Console(stdout=out or sys.stdout, stderr=err or sys.stderr)
        self.err = err or sys.stderr
        self.state = state
        self.root = RootNode(self, state)
        self.last_status = EXIT_OK
        self.recorder = recorder
        self.sync()

    def sync(self) -> None:
        """Make the tree match the desired state; step out of nodes that went away."""
        self.state.refresh()
        self.root.sync()
        node = self._current_node
        while not node.attached():
            node = node.parent
        self._current_node = node

    def run_cmdline(self, cmdline: str) -> None:
        self.last_status = EXIT_OK
        secret_line = lines.carries_secret(cmdline)
        started: Started | None = None
        failure: BaseException | None = None
        try:
            self.sync()
            if cmdline:
                line = lines.parse(self._parser, cmdline)
                if self.recorder is not None and line.command not in READ_ONLY:
                    # A line that looked like it held a secret is refused; its words are
                    # not kept (a token may sit in any slot).
                    words = ([w for w in (line.path, line.command) if w] + [WITHHELD]
                             if secret_line else cmdline.split())
                    started = self.recorder.begin(words)
                kparams = self._secrets_checked(line)
                self.state.begin(self._line_confirm(line, kparams))
                with _quiet_configshell():
                    self._execute_command(line.path, line.command, line.pparams, kparams)
        except lines.LineError as exc:
            self.fail(format_reports(exc.reports), EXIT_USAGE)
            failure = exc
        except IscsihaError as exc:  # the one error boundary
            secret_line |= any(r.code == lines.SECRET_ON_LINE for r in exc.reports)
            self.fail(format_reports(exc.reports), EXIT_REFUSED)
            failure = exc
        except (ExecutionError, ParseException) as exc:
            self.fail(str(exc), EXIT_USAGE)
            failure = IscsihaError.single("usage", "command line", None, "the console's "
                                          "grammar", str(exc))
        except Exception as exc:  # a bug ends in a report, not a traceback
            self.fail(bug_report(exc), EXIT_REFUSED)
            failure = exc
        finally:
            if secret_line:
                forget_last(cmdline)
            if started is not None and self.recorder is not None:
                self.recorder.end(started, failure)
            self.sync()

    def _secrets_checked(self, line: lines.Line) -> dict[str, str]:
        """Refuse secrets typed into the line, as keywords or in a positional slot."""
        named = list(line.kparams.items())
        for node in self._targets(line.path):
            if line.command in node.list_commands():
                method = node.get_command_method(line.command)
                slots = inspect.getfullargspec(method).args[1:]
                named += zip(slots, line.pparams, strict=False)
        lines.inline_secrets(named, f"{line.path or self._current_node.path} {line.command}")
        return lines.for_stdin(line.kparams)

    def _line_confirm(self, line: lines.Line, kparams: dict[str, str]) -> str | None:
        """confirm=yes on a command without a confirm parameter of its own (`set`, an
        ACL's or a portal's delete): taken off the line, it answers apply's question
        about what initiators would lose."""
        for node in self._targets(line.path):
            if line.command in node.list_commands():
                method = node.get_command_method(line.command)
                if "confirm" in inspect.getfullargspec(method).args:
                    return None
        return kparams.pop("confirm", None)

    def _targets(self, path: str) -> list[Any]:
        """The nodes a command runs on, as configshell resolves them; none if unknown."""
        try:
            node = self._current_node.get_node(path.rstrip("*") or ".")
        except ValueError:
            return []
        return list(node.children) if path.endswith("*") else [node]

    def fail(self, text: str, status: int) -> None:
        print(text, file=self.err, flush=True)
        self.last_status = status

    def run_once(self, cmdline: str) -> int:
        self.run_cmdline(cmdline)
        return int(self.last_status)


@contextmanager
def _quiet_configshell() -> Iterator[None]:
    """configshell-fb uses pyparsing names pyparsing 3 deprecates: not the admin's concern."""
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", category=DeprecationWarning, module="configshell_fb")
        yield


def ask(question: str) -> bool:
    try:
        return input(f"{question} [y/N] ").strip().lower() in ("y", "yes")
    except EOFError:
        return False


def ask_secret(prompt: str) -> str:
    return lines.read_secret(prompt, is_tty=sys.stdin.isatty, ask=getpass.getpass,
                             readline=sys.stdin.readline)


def bug_report(exc: BaseException) -> str:
    """What an unexpected exception prints: where it happened, never the values (a
    message may quote a secret)."""
    where = traceback.extract_tb(exc.__traceback__)[-1:] if exc.__traceback__ else []
    place = f" at {where[0].filename}:{where[0].lineno}" if where else ""
    return (f"internal error: {type(exc).__name__}{place}. This is a bug in iscsiha-console; "
            "please report it with the command you ran (without any secret). "
            "Nothing more was run.")


def forget_last(cmdline: str) -> None:
    """Drop the line just typed from readline's history before configshell saves it."""
    try:
        import readline
    except ImportError:  # no readline: nothing keeps a history
        return
    length = readline.get_current_history_length()
    if length and (readline.get_history_item(length) or "").strip() == cmdline.strip():
        readline.remove_history_item(length - 1)


def scrub_history(path: Path) -> None:
    """Remove lines holding a secret from a history file (one written before they were
    refused), and from what readline read of it."""
    try:
        text = path.read_text(errors="replace")
    except OSError:
        return
    kept = [line for line in text.splitlines() if not lines.carries_secret(line)]
    if len(kept) != len(text.splitlines()):
        with suppress(OSError):
            path.write_text("".join(f"{line}\n" for line in kept))
        try:
            import readline
        except ImportError:
            return
        for index in reversed(range(readline.get_current_history_length())):
            if lines.carries_secret(readline.get_history_item(index + 1) or ""):
                readline.remove_history_item(index)


def progress(message: str) -> None:
    print(f"iscsiha: {message}", file=sys.stderr, flush=True)


def build(backend: Backend, backups: Backups, preferences_dir: str | None = PREFERENCES_DIR,
          recorder: Recorder | None = None, **streams: Any) -> ConsoleShell:
    state = State(backend, backups, source="desired state", progress=progress, ask=ask,
                  ask_secret=ask_secret)
    return ConsoleShell(state, preferences_dir, recorder=recorder, **streams)


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="iscsiha-console", description=__doc__.splitlines()[0])
    parser.add_argument("--desired", type=Path, default=DESIRED_PATH, metavar="FILE",
                        help=f"the desired-state file (default {DESIRED_PATH})")
    parser.add_argument("--backups", type=Path, default=BACKUP_DIR, metavar="DIR",
                        help=f"where earlier desired states are kept (default {BACKUP_DIR})")
    parser.add_argument("command", nargs=argparse.REMAINDER,
                        help="a console command line, e.g. /volumes create name=db size=100G")
    return parser


def main(argv: Sequence[str] | None = None, *, backend: Backend | None = None,
         preferences_dir: str | None = PREFERENCES_DIR) -> int:
    """The entry point; tests pass a fake ``backend`` and their own ``preferences_dir``."""
    try:
        args = _parser().parse_args(argv)
    except SystemExit as exc:
        return EXIT_USAGE if exc.code else EXIT_OK
    recorder = None
    if backend is None:
        from iscsiha.console.backend import ClusterBackend  # the one module that reaches outside

        real = ClusterBackend(args.desired)
        backend, recorder = real, real.recorder(progress)
    shell = build(backend, Backups(args.backups), preferences_dir, recorder)
    if args.command:
        return shell.run_once(" ".join(args.command))
    while not shell._exit:
        try:
            shell.run_interactive()
        except Exception as exc:  # a bug must not end the admin's session
            shell.fail(bug_report(exc), EXIT_REFUSED)
    return EXIT_OK


if __name__ == "__main__":
    sys.exit(main())
