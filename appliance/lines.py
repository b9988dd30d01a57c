"""The console's command lines: read whole or refused, and kept free of secrets.

configshell-fb parses a line with pyparsing's ``parseString`` without ``parseAll``:
it stops at the first character its grammar does not know and drops the rest
(`secret=abcdefghijklmé` became `abcdefghijklm`). Here a line is checked character by
character first, then parsed to its end, so a line is either taken whole or refused
with a report naming the character and where it is.

Secrets (the join token, BMC passwords, CHAP secrets) never travel in a line: sudo
logs the line of `ssh admin@box LINE`, and readline keeps the interactive ones in
the history file. A secret parameter is given as ``-`` (or left empty) and then
asked at the terminal without echo, or read as one line from stdin by a script.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

from pyparsing import ParseBaseException, ParserElement, ParseResults

from iscsiha.errors import IscsihaError, Report, Secret
from iscsiha.model.fields import MUTUAL_SECRET, SECRET

# Parameter names that carry a secret, in every command of the console.
SECRET_PARAMETERS = ("token", "bmc_password", "peer_bmc_password", SECRET, MUTUAL_SECRET)
FROM_STDIN = "-"
SECRET_ON_LINE = "secret-on-line"
# The longest real line (`/cluster init` with every setting) is under 700 characters.
MAX_LINE = 2000
# What configshell's grammar takes: words of letters, digits and these, between spaces.
WORD_PUNCTUATION = "?;&*$!#,=_+/.<>()~@:-%[]\\"
ALLOWED = f"printable ASCII letters, digits, spaces and {WORD_PUNCTUATION}"
_WORD_CHARACTERS = frozenset(
    "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789" + WORD_PUNCTUATION)
_NAMES = "|".join(SECRET_PARAMETERS)
# A secret parameter with a value other than `-`, anywhere in a raw line (even one that
# does not parse), or a join token (ISJ1-..., in any case). configshell's grammar skips
# blanks around `=`: `secret = abc` sets secret.
_INLINE_SECRET = re.compile(rf"(?i)(?:^|\s)(?:{_NAMES})\s*=\s*(?!-?(?:\s|$))|isj1")


class LineError(IscsihaError):
    """A line that cannot be taken as a command: a usage error (exit 2), not a refusal."""


@dataclass(frozen=True)
class Line:
    """A command line as configshell's grammar splits it, with every character kept."""

    path: str = ""
    command: str = ""
    pparams: list[str] = field(default_factory=list)
    kparams: dict[str, str] = field(default_factory=dict)
    # (start, end) of every token: together they cover every non-blank character.
    spans: list[tuple[int, int]] = field(default_factory=list)


def describe(char: str) -> str:
    """A character as a person can find it: its code point and, if printable, itself."""
    name = {"\n": "a newline", "\r": "a carriage return", "\t": "a tab", "\0": "a NUL"}.get(char)
    shown = f" {char!r}" if char.isprintable() else ""
    return f"U+{ord(char):04X}{shown}" + (f" ({name})" if name else "")


def _refuse(where: int, message: str, allowed: str = ALLOWED) -> LineError:
    # The line itself is not shown: it may carry a secret typed by mistake.
    return LineError([Report("bad-line", f"console line, column {where + 1}", None, allowed,
                             message)])


def check_text(line: str) -> None:
    """Refuse a line too long or holding a character the grammar would drop."""
    if len(line) > MAX_LINE:
        raise LineError([Report("line-too-long", "console line", f"{len(line)} characters",
                                f"at most {MAX_LINE} characters", "is too long")])
    for where, char in enumerate(line):
        if char != " " and char not in _WORD_CHARACTERS:
            raise _refuse(where, f"has {describe(char)}, which a command line "
                                       "cannot hold; nothing was run")


def parse(parser: ParserElement, line: str) -> Line:
    """The whole line as path, command and parameters; a LineError otherwise."""
    check_text(line)
    try:
        results = parser.parse_string(line, parse_all=True)
    except ParseBaseException as exc:
        where = min(max(exc.loc, 0), max(len(line) - 1, 0))
        raise _refuse(where, "cannot be read as [PATH] COMMAND [PARAMETER ...] "
                                   "[KEYWORD=VALUE ...]; nothing was run") from exc
    spans: list[tuple[int, int]] = []

    def located(item: Any) -> Any:
        spans.append((int(item.locn_start), int(item.locn_end)))
        return item.value

    path = located(results.path) if isinstance(results.path, ParseResults) else ""
    command = located(results.command) if isinstance(results.command, ParseResults) else ""
    first_parameter = len(spans)
    pparams = [str(located(p)) for p in results.pparams or []]
    kparams: dict[str, str] = {}
    for item in results.kparams or []:
        start = int(item.locn_start)
        key, value = located(item)
        if key in kparams:
            # configshell keeps the last of two; the admin meant one of them.
            raise _refuse(start, f"gives {key} twice; nothing was run",
                          "each parameter once")
        kparams[str(key)] = str(value)
    if not command and (pparams or kparams):
        # configshell would run `cd` and drop them without a word.
        raise _refuse(min(start for start, _ in spans[first_parameter:]),
                      "has parameters without a command; nothing was run",
                      "[PATH] COMMAND [PARAMETER ...] [KEYWORD=VALUE ...]")
    return Line(str(path), str(command), pparams, kparams, spans)


def carries_secret(line: str) -> bool:
    """Whether a raw line (parsed or not) holds something that looks like a secret."""
    return _INLINE_SECRET.search(line) is not None


def inline_secrets(named: Iterable[tuple[str, str]], where: str) -> None:
    """Refuse secret parameters given a value in the line; names are (parameter, value)."""
    reports = [
        Report(SECRET_ON_LINE, f"{where} {name}", Secret(value),
               f"{name}={FROM_STDIN}: asked at the terminal without echo, or read as one "
               "line from stdin (`echo SECRET | iscsiha-console ... "
               f"{name}={FROM_STDIN}`)",
               "is a secret and is never typed into a command line (the line is logged "
               "and kept in the history); nothing was run")
        for name, value in named if name in SECRET_PARAMETERS and value not in ("", FROM_STDIN)]
    if reports:
        raise IscsihaError(reports)


def for_stdin(kparams: dict[str, str]) -> dict[str, str]:
    """`-` and empty both mean "ask": the commands see an empty value."""
    return {k: "" if k in SECRET_PARAMETERS and v == FROM_STDIN else v
            for k, v in kparams.items()}


def read_secret(prompt: str, *, is_tty: Callable[[], bool], ask: Callable[[str], str],
                readline: Callable[[], str]) -> str:
    """One secret: asked without echo on a terminal, else one line of stdin (a script)."""
    if is_tty():
        try:
            return ask(prompt)
        except EOFError:
            return ""
    text = readline()
    if not text:
        raise IscsihaError.single(
            "secret-missing", prompt.strip().rstrip(":"), None,
            "one line on stdin for each secret given as `-` (or left out), in the order "
            "the command's help lists them", "stdin ended before this secret; nothing was run")
    return text[:-1] if text.endswith("\n") else text
