"""The desired state's [alerts]: who is told when something goes wrong, and the volume
group fill that counts as wrong.

    [alerts]
    vg_fill_percent = 85
    [[alerts.recipients]]
    name = "ops-mail"
    kind = "email"            # email, snmp, webhook or syslog
    server = "smtp.example.com:587"
    from = "san@example.com"
    to = ["ops@example.com"]

The same reader checks the table in `iscsiha apply` and, in the alert agent, the copy
apply leaves on each box (``alerts_data``): one definition for both ends.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any
from urllib.parse import urlsplit

from iscsiha.errors import IscsihaError
from iscsiha.model import names
from iscsiha.model.fields import (
    COMMUNITY,
    FROM,
    KIND,
    NAME,
    PASSWORD,
    RECIPIENT_KEYS,
    RECIPIENTS,
    SERVER,
    STARTTLS,
    TO,
    TOKEN,
    URL,
    USER,
    VG_FILL_PERCENT,
    Problems,
    Table,
)
from iscsiha.model.types import (
    DEFAULT_VG_FILL_PERCENT,
    Alerts,
    HostPort,
    Recipient,
    RecipientKind,
)

RECIPIENTS_MAX = 16
TO_MAX = 10
VG_FILL_MIN, VG_FILL_MAX = 50, 99
DEFAULT_PORTS = {RecipientKind.EMAIL: 25, RecipientKind.SNMP: 162, RecipientKind.SYSLOG: 514}
URL_MAX = 2000
_KINDS = {k.value: k for k in RecipientKind}

# An address as it goes into an SMTP envelope: no spaces, brackets or line breaks that
# could start another header or command.
_MAIL = re.compile(r"[A-Za-z0-9.!#$%&'*+/=?^_`{|}~-]{1,64}"
                   r"@[A-Za-z0-9](?:[A-Za-z0-9.-]{0,251}[A-Za-z0-9])?\Z")
MAIL_ALLOWED = "an address LOCAL@DOMAIN without spaces or angle brackets, e.g. ops@example.com"
_PRINTABLE = re.compile(r"[\x21-\x7e]+\Z")
SMTP_USER_ALLOWED = "1 to 255 printable ASCII characters without spaces"
SMTP_PASSWORD_ALLOWED = "1 to 255 printable ASCII characters (spaces allowed)"
COMMUNITY_ALLOWED = "1 to 64 printable ASCII characters without spaces"
TOKEN_ALLOWED = "1 to 4096 printable ASCII characters without spaces (sent as 'Bearer TOKEN')"
URL_ALLOWED = (f"an http:// or https:// URL with a host, at most {URL_MAX} printable ASCII "
               "characters without spaces or user:password@ (use token)")
SERVER_ALLOWED = "HOST or HOST:PORT (an IP address or DNS name; [IPv6]:PORT), port 1 to 65535"


def read_alerts(t: Table) -> Alerts | None:
    """The [alerts] table, or None after a problem (reported to ``t.problems``)."""
    p = t.problems
    before = len(p.reports)
    fill = t.integer(VG_FILL_PERCENT, VG_FILL_MIN, VG_FILL_MAX, required=False)
    tables = t.tables(RECIPIENTS, required=False)
    if len(tables) > RECIPIENTS_MAX:
        p.add("too-many-recipients", t.child(RECIPIENTS), len(tables),
              f"at most {RECIPIENTS_MAX} recipients")
    recipients = [_recipient(r) for r in tables]
    seen: dict[str, str] = {}
    for r in tables:
        name = r.data.get(NAME)
        if isinstance(name, str) and name in seen:
            p.add("duplicate-recipient-name", r.child(NAME), name, "a name used once",
                  f"is also used by {seen[name]}")
        elif isinstance(name, str):
            seen[name] = r.child(NAME)
    t.finish()
    if len(p.reports) > before:
        return None
    return Alerts(tuple(r for r in recipients if r is not None),
                  fill if fill is not None else DEFAULT_VG_FILL_PERCENT)


def load_alerts_data(data: Mapping[str, Any], source: str) -> Alerts:
    """Check a copy of [alerts] (the agent's file) as apply checked the original."""
    problems = Problems()
    alerts = read_alerts(Table(data, source, problems))
    if alerts is None or problems.has_errors:
        raise IscsihaError(problems.reports)
    return alerts


# Where each kind keeps its one secret (email password, SNMP community, webhook token).
SECRET_KEY = {RecipientKind.EMAIL: PASSWORD, RecipientKind.SNMP: COMMUNITY,
              RecipientKind.WEBHOOK: TOKEN}


def alerts_data(alerts: Alerts) -> dict[str, Any]:
    """``alerts`` as the [alerts] table it was read from (secrets in clear: the caller
    writes it where only root and the cluster's group read it)."""
    out = []
    for r in alerts.recipients:
        item: dict[str, Any] = {NAME: r.name, KIND: r.kind.value}
        if r.server is not None:
            item[SERVER] = str(r.server)
        if r.kind is RecipientKind.EMAIL:
            item.update({FROM: r.sender, TO: list(r.to), STARTTLS: r.starttls})
            if r.user:
                item[USER] = r.user
        elif r.kind is RecipientKind.WEBHOOK:
            item[URL] = r.url
        if r.secret is not None and r.kind in SECRET_KEY:
            item[SECRET_KEY[r.kind]] = str(r.secret)
        out.append(item)
    return {VG_FILL_PERCENT: alerts.vg_fill_percent, RECIPIENTS: out}


def _recipient(t: Table) -> Recipient | None:
    p = t.problems
    before = len(p.reports)
    name = t.text(NAME, lambda s: names.object_name_problem(s) is None,
                  names.OBJECT_NAME_ALLOWED, code="bad-name")
    kind = t.choice(KIND, _KINDS)
    if kind is None:
        t.seen.update(k for keys in RECIPIENT_KEYS.values() for k in keys)
        t.finish()
        return None
    server = _server(t, kind, required=kind is not RecipientKind.SYSLOG) \
        if kind is not RecipientKind.WEBHOOK else None
    r: Recipient | None = None
    if kind is RecipientKind.EMAIL:
        sender = t.text(FROM, _mail_ok, MAIL_ALLOWED, code="bad-mail-address")
        to = []
        entries = t.strings(TO)
        if not entries and t.data.get(TO) == []:
            p.add("no-mail-recipients", t.child(TO), [], f"1 to {TO_MAX} addresses")
        if len(entries) > TO_MAX:
            p.add("too-many-mail-recipients", t.child(TO), len(entries), f"at most {TO_MAX}")
        for path, value in entries:
            if _mail_ok(value):
                to.append(value)
            else:
                p.add("bad-mail-address", path, value, MAIL_ALLOWED)
        user = t.text(USER, lambda s: len(s) <= 255 and _PRINTABLE.match(s) is not None,
                      SMTP_USER_ALLOWED, required=False)
        password = t.secret(PASSWORD, lambda s: 1 <= len(s) <= 255 and s.isascii()
                            and s.isprintable(), SMTP_PASSWORD_ALLOWED, required=False)
        if (user is None) != (password is None) and len(p.reports) == before:
            missing = PASSWORD if password is None else USER
            p.add("login-half-set", t.child(missing), None,
                  f"both {USER} and {PASSWORD}, or neither (no SMTP login)")
        starttls = t.typed(STARTTLS, bool, required=False)
        if name and server and sender:
            r = Recipient(name, kind, server, sender, tuple(to), user or "", password,
                          True if starttls is None else starttls)
    elif kind is RecipientKind.SNMP:
        community = t.secret(COMMUNITY, lambda s: len(s) <= 64 and _PRINTABLE.match(s)
                             is not None, COMMUNITY_ALLOWED)
        if name and server and community:
            r = Recipient(name, kind, server, secret=community)
    elif kind is RecipientKind.WEBHOOK:
        url = t.text(URL, _url_ok, URL_ALLOWED, code="bad-url")
        token = t.secret(TOKEN, lambda s: len(s) <= 4096 and _PRINTABLE.match(s)
                         is not None, TOKEN_ALLOWED, required=False)
        if name and url:
            r = Recipient(name, kind, url=url, secret=token)
    elif name:
        r = Recipient(name, kind, server)
    t.finish()
    return r if len(p.reports) == before else None


def _server(t: Table, kind: RecipientKind, *, required: bool) -> HostPort | None:
    text = t.typed(SERVER, str, required=required)
    if text is None:
        return None
    split = names.split_host_port(text, DEFAULT_PORTS[kind]) if len(text) <= 300 else None
    if split is None or names.host_name_problem(split[0]) is not None:
        t.problems.add("bad-server", t.child(SERVER), text, SERVER_ALLOWED)
        return None
    return HostPort(*split)


def _mail_ok(text: str) -> bool:
    return len(text) <= 254 and _MAIL.match(text) is not None


def _url_ok(text: str) -> bool:
    if len(text) > URL_MAX or _PRINTABLE.match(text) is None:
        return False
    try:
        parts = urlsplit(text)
        parts.port  # noqa: B018 - raises ValueError on a port that is not one
    except ValueError:
        return False
    return (parts.scheme in ("http", "https") and bool(parts.hostname)
            and "@" not in parts.netloc)
