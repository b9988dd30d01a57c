"""The one subprocess runner: argument lists, no shell, absolute paths, logged."""

from __future__ import annotations

import logging
import os
import subprocess
import tempfile
import time
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import IO

from iscsiha.errors import IscsihaError

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class CommandResult:
    argv: tuple[str, ...]
    returncode: int
    stdout: str
    stderr: str
    seconds: float

    @property
    def ok(self) -> bool:
        return self.returncode == 0


def command_failed(result: CommandResult) -> IscsihaError:
    detail = (result.stderr.strip() or result.stdout.strip()).splitlines()
    return IscsihaError.single(
        "command-failed",
        "command",
        " ".join(result.argv),
        "exit code 0",
        f"exited with {result.returncode}: {detail[-1] if detail else 'no output'}",
    )


class Runner:
    """Runs one command at a time and records command, exit code and duration.

    Secrets go through ``input`` (stdin), never argv: argv is visible in the
    process list and in our logs.
    """

    def run(
        self,
        argv: Sequence[str],
        *,
        input: str | None = None,
        check: bool = True,
        timeout: float | None = 60.0,
        env: Mapping[str, str] | None = None,
    ) -> CommandResult:
        args = _checked_argv(argv)
        start = time.monotonic()
        try:
            proc = subprocess.run(
                args,
                input=input,
                capture_output=True,
                text=True,
                timeout=timeout,
                env=None if env is None else {**os.environ, **env},
                check=False,
            )
        except FileNotFoundError as exc:
            raise IscsihaError.single(
                "command-missing", "command", args[0], "an installed program", str(exc)
            ) from exc
        except subprocess.TimeoutExpired as exc:
            raise IscsihaError.single(
                "command-timeout",
                "command",
                " ".join(args),
                f"finishing within {timeout} s",
                "timed out",
            ) from exc
        except UnicodeDecodeError as exc:  # output is not text: refused, not a traceback
            raise IscsihaError.single(
                "command-output-not-text", "command", " ".join(args), "UTF-8 output", str(exc)
            ) from exc
        result = CommandResult(
            tuple(args), proc.returncode, proc.stdout, proc.stderr, time.monotonic() - start
        )
        log.debug("ran %s: exit %d in %.3f s", args, result.returncode, result.seconds)
        if check and not result.ok:
            raise command_failed(result)
        return result

    def feed(self, argv: Sequence[str], parts: Iterable[bytes], timeout: float
             ) -> CommandResult:
        """Run a command with ``parts`` written one after the other on its stdin (a root
        image to the peer).

        A command that stops reading (it refused what it got first) ends the sending; its
        output says why. An error producing the parts stops the command. The bound is
        checked between parts: a peer that stops reading without exiting is left to
        SSH's keepalive.
        """
        args = _checked_argv(argv)
        start = time.monotonic()
        with tempfile.TemporaryFile() as out, tempfile.TemporaryFile() as err:
            try:
                proc = subprocess.Popen(args, stdin=subprocess.PIPE, stdout=out, stderr=err)
            except FileNotFoundError as exc:
                raise IscsihaError.single("command-missing", "command", args[0],
                                          "an installed program", str(exc)) from exc
            assert proc.stdin is not None
            try:
                for part in parts:
                    if time.monotonic() - start > timeout:
                        break
                    proc.stdin.write(part)
                proc.stdin.close()
            except BrokenPipeError:
                pass  # the command stopped reading: its output tells why
            except BaseException:
                proc.kill()
                proc.wait()
                raise
            try:
                proc.wait(timeout=max(timeout - (time.monotonic() - start), 1.0))
            except subprocess.TimeoutExpired as exc:
                proc.kill()
                proc.wait()
                raise IscsihaError.single("command-timeout", "command", " ".join(args),
                                          f"finishing within {timeout} s", "timed out") from exc
            out.seek(0)
            err.seek(0)
            result = CommandResult(tuple(args), proc.returncode,
                                   out.read().decode(errors="replace"),
                                   err.read().decode(errors="replace"),
                                   time.monotonic() - start)
        log.debug("fed %s: exit %d in %.3f s", args, result.returncode, result.seconds)
        return result

    def interactive(self, argv: Sequence[str]) -> int:
        """Run a program on this terminal (stdin, stdout, stderr inherited); its exit code."""
        args = _checked_argv(argv)
        log.debug("handing the terminal to %s", args)
        try:
            return subprocess.call(args)
        except FileNotFoundError as exc:
            raise IscsihaError.single(
                "command-missing", "command", args[0], "an installed program", str(exc)
            ) from exc

    def spawn(
        self,
        argv: Sequence[str],
        *,
        stdout: IO[bytes] | int | None = subprocess.DEVNULL,
        stderr: IO[bytes] | int | None = subprocess.STDOUT,
        new_session: bool = True,
        env: Mapping[str, str] | None = None,
    ) -> subprocess.Popen[bytes]:
        """Start a long-running process; the caller keeps its pid and stops it by that pid.

        ``env`` replaces the environment (unlike ``run``, which adds to it).
        """
        args = _checked_argv(argv)
        log.debug("spawning %s", args)
        return subprocess.Popen(
            args,
            stdin=subprocess.DEVNULL,
            stdout=stdout,
            stderr=stderr,
            start_new_session=new_session,
            env=None if env is None else dict(env),
        )


def _checked_argv(argv: Sequence[str]) -> list[str]:
    args = [str(a) for a in argv]
    if not args or not os.path.isabs(args[0]):
        raise IscsihaError.single(
            "command-not-absolute",
            "command",
            args[0] if args else "",
            "an absolute path to the program, e.g. /usr/sbin/drbdadm",
        )
    return args
