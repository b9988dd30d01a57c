"""Removing secrets from text a support bundle collects: by value, then by name.

By value: every secret this box knows (the desired state's typed Secrets, the cluster
key, the DRBD peer secrets derived from it, Pacemaker's lrm:// store) in each form a
tool may print it (raw, JSON, XML, shell, URL, hex, base64), even where a line break
and indentation split it. By name: what no list can hold (a BMC password typed into
the CIB by hand, a private key, a join token) where its key or shape gives it away.
Both work on bytes, so a file that is not text is redacted the same way.
"""

from __future__ import annotations

import base64
import html
import json
import re
import shlex
import urllib.parse
from collections.abc import Iterable
from dataclasses import fields, is_dataclass

from iscsiha.errors import Secret

MARK = b"[redacted]"
# Shorter secrets are redacted only where named: by value they would cut every
# occurrence of a common word or digit out of the bundle.
VALUE_MIN = 6
# Between any two characters of a secret: a line break (with the indentation or
# quoting a wrapped line gets), so a secret a tool wrapped is still found.
_BREAK = rb"(?:[ \t]*\\?\r?\n[ \t>|#*]*)?"

# Keys whose value is a secret whatever it is (CIB nvpairs, JSON, key=value, TOML).
# Not a bare "token": corosync.conf's `token: 3000` is a timeout a maintainer needs.
_KEYWORD = rb"(?:passw(?:or)?d|passwd|secret|psk|(?:api|auth|access|bearer)[_-]?token|" \
           rb"community|authkey|private[_-]?key)"
_SECRET_KEY = rb"[\w.-]{0,64}?" + _KEYWORD + rb"[\w.-]{0,64}"  # a whole key, for fullmatch
_NAMED = [
    # PEM private keys (SSH, TLS), whole blocks.
    # (One never closed takes what follows, within a bound, as every pattern here has:
    # a hostile file must cost time in proportion to its size, not its square.)
    (re.compile(rb"-----BEGIN [A-Z0-9 ]{0,40}PRIVATE KEY-----(?:.{0,65536}?-----END "
                rb"[A-Z0-9 ]{0,40}PRIVATE KEY-----|.{0,65536})", re.S), MARK),
    # `cluster init`'s join token (ISJ1- then base32 groups).
    (re.compile(rb"ISJ1-[A-Z2-7-]{8,200}", re.I), MARK),
    # drbd.conf and `drbdsetup show`: shared-secret "X"; (quoted or not).
    (re.compile(rb'(shared-secret\s+)(?:"(?:[^"\\\n]|\\.){0,4096}"|[^\s;]{1,4096})', re.I),
     rb"\1" + MARK),
    # JSON/TOML: "chap_password": "X" / mutual_secret = "X" / 'key': 'X'.
    # The searches start at the keyword (what precedes it in the key stays as it is):
    # starting at every word would make a long run of word characters cost its square.
    (re.compile(rb'(' + _KEYWORD + rb'[\w.-]{0,64}["\']?\s*[:=]\s*)'
                rb'(?:"(?:[^"\\\n]|\\.){0,4096}"|\'[^\'\n]{0,4096}\')', re.I), rb"\1" + MARK),
    # key=value and key: value unquoted (command lines, logs, crm output).
    (re.compile(rb"(" + _KEYWORD + rb"[\w.-]{0,64}\s*[=:]\s*)(?![\"'\[])"
                rb"([^\s,;&<>\"']{1,4096})", re.I), rb"\1" + MARK),
]
# XML element with a secret-named name attribute: its value attribute (any order).
_NVPAIR = re.compile(rb"<(?:nvpair|attribute)\b[^>]{0,4096}>", re.I)
_NAME_ATTR = re.compile(rb'\bname\s*=\s*["\'](' + _SECRET_KEY + rb')["\']', re.I)
_VALUE_ATTR = re.compile(rb'(\bvalue\s*=\s*)("[^"]{0,4096}"|\'[^\']{0,4096}\')', re.I)


def forms(secret: str | bytes) -> set[bytes]:
    """The ways a tool may print ``secret``: raw, and escaped for JSON, XML, TOML, the
    shell, URLs and Python; bytes (a key file) also as hex and base64."""
    if isinstance(secret, bytes):
        found = {secret, secret.hex().encode(), secret.hex().upper().encode(),
                 base64.b64encode(secret), base64.b64encode(secret).rstrip(b"=")}
        try:
            text = secret.decode()
        except UnicodeDecodeError:
            return found
        return found | forms(text)
    shown = {secret, json.dumps(secret)[1:-1], json.dumps(secret, ensure_ascii=False)[1:-1],
             html.escape(secret), html.escape(secret, quote=False),
             html.escape(secret).replace("&#x27;", "&apos;").replace("&quot;", "&#34;"),
             shlex.quote(secret), secret.replace("'", "'\"'\"'"),
             urllib.parse.quote(secret, safe=""), urllib.parse.quote_plus(secret),
             repr(secret)[1:-1]}
    return {s.encode("utf-8", "surrogateescape") for s in shown}


def _pattern(form: bytes) -> bytes:
    return _BREAK.join(re.escape(form[i:i + 1]) for i in range(len(form)))


class Redactor:
    """Removes ``secrets`` (by value) and named secrets from any bytes."""

    def __init__(self, secrets: Iterable[str | bytes]) -> None:
        kept = {s for s in secrets if s}
        found = {f for s in kept for f in forms(s)}
        long_enough = sorted((f for f in found if len(f) >= VALUE_MIN), key=len, reverse=True)
        # One lookahead alternation, longest first: at each position the longest secret
        # starting there; spans are then merged, so overlapping secrets and secrets
        # inside others are removed whole.
        self._regex = (re.compile(rb"(?=(" + b"|".join(_pattern(f) for f in long_enough)
                                  + rb"))") if long_enough else None)
        self.count = len(kept)
        self.too_short = sum(1 for s in kept if len(s) < VALUE_MIN)

    def __repr__(self) -> str:  # never the values
        return f"<Redactor of {self.count} secrets>"

    def redact(self, data: bytes) -> bytes:
        return _by_name(self._by_value(data))

    def redact_text(self, text: str) -> str:
        return self.redact(text.encode("utf-8", "surrogateescape")).decode(
            "utf-8", "surrogateescape")

    def _by_value(self, data: bytes) -> bytes:
        regex = self._regex
        if regex is None:
            return data
        spans: list[list[int]] = []
        for m in regex.finditer(data):
            start, end = m.start(1), m.end(1)
            if spans and start <= spans[-1][1]:
                spans[-1][1] = max(spans[-1][1], end)
            else:
                spans.append([start, end])
        if not spans:
            return data
        out, at = [], 0
        for start, end in spans:
            out += [data[at:start], MARK]
            at = end
        out.append(data[at:])
        return b"".join(out)


def _by_name(data: bytes) -> bytes:
    for regex, replacement in _NAMED:
        data = regex.sub(replacement, data)
    return _NVPAIR.sub(_nvpair, data)


def _nvpair(m: re.Match[bytes]) -> bytes:
    tag = m.group(0)
    if _NAME_ATTR.search(tag) is None:
        return tag
    return _VALUE_ATTR.sub(lambda v: v.group(1) + b'"' + MARK + b'"', tag)


def model_secrets(value: object) -> set[str]:
    """Every Secret in a model object (a Config, a Node...), wherever its type puts one:
    a field added to the model later is covered without a change here."""
    found: set[str] = set()
    stack = [value]
    while stack:
        item = stack.pop()
        if isinstance(item, Secret):
            found.add(str.__str__(item))
        elif is_dataclass(item) and not isinstance(item, type):
            stack += [getattr(item, f.name) for f in fields(item)]
        elif isinstance(item, (tuple, list, set, frozenset)):
            stack += list(item)
        elif isinstance(item, dict):
            stack += [*item.keys(), *item.values()]
    return found


def named_values(data: Iterable[tuple[str, object]]) -> set[str]:
    """Values of (key, value) pairs whose key names a secret (a raw TOML table, CIB
    nvpairs): for a desired state the model cannot load."""
    key = re.compile(_SECRET_KEY.decode(), re.I)
    return {v for k, v in data if isinstance(v, str) and key.fullmatch(k) and v
            and not v.startswith("lrm://")}
