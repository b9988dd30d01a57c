"""Sending one event to every recipient: each in its own thread, all within one deadline.

Pacemaker kills an alert agent after its timeout (the plan's 30 s) and DRBD waits for
its handlers, so no recipient may hold the others up: a recipient that fails or does
not answer in time is reported, the others are still sent.

The enterprise OID of the SNMP traps is under Net-SNMP's playpen
(NET-SNMP-MIB::netSnmpPlaypen, 1.3.6.1.4.1.8072.9999.9999), which Net-SNMP sets aside
for local use, until the project has an IANA enterprise number: docs/alerts.md.
"""

from __future__ import annotations

import json
import os
import smtplib
import socket
import ssl
import syslog
import tempfile
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from email.message import EmailMessage
from email.utils import formatdate, make_msgid

from iscsiha.alerts.events import Event, Severity
from iscsiha.errors import IscsihaError
from iscsiha.executors.runner import Runner
from iscsiha.model.types import Recipient, RecipientKind

DEADLINE_S = 20.0  # all recipients; below the alert's 30 s timeout
SEND_TIMEOUT_S = 10.0  # one connection's
SNMPTRAP = "/usr/bin/snmptrap"
TRAP_BASE = "1.3.6.1.4.1.8072.9999.9999.21"
TRAP_OID = f"{TRAP_BASE}.0.1"  # iscsihaAlert notification
# Varbinds: TRAP_BASE.1.N, in this order, each an OCTET STRING.
TRAP_FIELDS = ("time", "box", "kind", "severity", "summary", "details")
SYSLOG_IDENT = "iscsiha-alert"
_SYSLOG_PRIORITY = {Severity.INFO: syslog.LOG_INFO, Severity.WARNING: syslog.LOG_WARNING,
                    Severity.CRITICAL: syslog.LOG_CRIT}
_FACILITY_DAEMON = 3


class SendError(Exception):
    """Why one recipient did not get the event (never with its secret)."""


# -- formats (pure) --------------------------------------------------------------------

def webhook_body(event: Event) -> bytes:
    return event.to_json().encode()


def email_message(event: Event, recipient: Recipient) -> EmailMessage:
    msg = EmailMessage()
    msg["Subject"] = f"[iscsiha {event.severity.value}] {event.summary}"
    msg["From"] = recipient.sender
    msg["To"] = ", ".join(recipient.to)
    msg["Date"] = formatdate(localtime=True)
    msg["Message-ID"] = make_msgid("iscsiha-alert")
    lines = [event.summary, "", f"time:     {event.time}", f"box:      {event.box}",
             f"kind:     {event.kind}", f"severity: {event.severity.value}", ""]
    lines += [f"{k}: {v}" for k, v in sorted(event.details.items())]
    lines += ["", "What it means and what to do: docs/alerts.md, under the kind.", "",
              event.to_json()]
    msg.set_content("\n".join(lines) + "\n")
    return msg


def snmp_varbinds(event: Event) -> list[str]:
    """snmptrap's arguments after the uptime and trap OID: OID, type, value triples."""
    record = event.record()
    record["details"] = json.dumps(event.details, sort_keys=True)
    out = []
    for i, field in enumerate(TRAP_FIELDS, 1):
        out += [f"{TRAP_BASE}.1.{i}", "s", str(record[field])]
    return out


def syslog_line(event: Event, hostname: str) -> bytes:
    """RFC 5424 over UDP: facility daemon, the event's severity, the record as message."""
    pri = _FACILITY_DAEMON * 8 + _SYSLOG_PRIORITY[event.severity]
    return f"<{pri}>1 {event.time} {hostname} {SYSLOG_IDENT} - {event.kind} - {event.to_json()}"\
        .encode()


# -- transports ------------------------------------------------------------------------

class _NoRedirect(urllib.request.HTTPRedirectHandler):
    """A redirect would carry the token to wherever the receiver points."""

    def redirect_request(self, *args: object, **kwargs: object) -> None:
        return None


def send_webhook(event: Event, r: Recipient, timeout: float) -> None:
    headers = {"Content-Type": "application/json", "User-Agent": "iscsiha-alert"}
    if r.secret is not None:
        headers["Authorization"] = f"Bearer {r.secret}"
    req = urllib.request.Request(r.url, data=webhook_body(event), headers=headers,
                                 method="POST")
    opener = urllib.request.build_opener(_NoRedirect, urllib.request.ProxyHandler({}))
    try:
        with opener.open(req, timeout=timeout) as resp:
            status = resp.status
    except urllib.error.HTTPError as exc:
        raise SendError(f"{r.url} answered HTTP {exc.code}") from None
    except (urllib.error.URLError, OSError, ValueError) as exc:
        reason = getattr(exc, "reason", exc)
        raise SendError(f"{r.url}: {reason}") from None
    if not 200 <= status < 300:
        raise SendError(f"{r.url} answered HTTP {status}")


def send_email(event: Event, r: Recipient, timeout: float) -> None:
    assert r.server is not None, "the model requires an email relay"
    msg = email_message(event, r)
    context = ssl.create_default_context()
    try:
        smtp: smtplib.SMTP
        if r.server.port == 465:  # submissions: TLS from the first byte
            smtp = smtplib.SMTP_SSL(r.server.host, r.server.port, timeout=timeout,
                                    context=context)
        else:
            smtp = smtplib.SMTP(r.server.host, r.server.port, timeout=timeout)
        with smtp:
            if r.starttls and r.server.port != 465:
                smtp.starttls(context=context)
            if r.user and r.secret is not None:
                smtp.login(r.user, str(r.secret))
            smtp.send_message(msg)
    except smtplib.SMTPException as exc:
        raise SendError(f"SMTP relay {r.server}: {type(exc).__name__}: "
                        f"{str(exc)[:200]}") from None
    except (OSError, ssl.SSLError) as exc:
        raise SendError(f"SMTP relay {r.server}: {exc}") from None


def send_snmp(event: Event, r: Recipient, timeout: float, runner: Runner) -> None:
    """snmptrap with the community in a private snmp.conf: on its command line any
    local user would read it in /proc."""
    assert r.server is not None and r.secret is not None, "the model requires both"
    with tempfile.TemporaryDirectory(prefix="iscsiha-snmp-") as conf:
        fd = os.open(os.path.join(conf, "snmp.conf"), os.O_WRONLY | os.O_CREAT | os.O_EXCL,
                     0o600)
        with os.fdopen(fd, "w") as f:
            f.write(f"defCommunity {r.secret}\ndefVersion 2c\n")
        host = f"udp6:[{r.server.host}]" if ":" in r.server.host else f"udp:{r.server.host}"
        argv = [SNMPTRAP, "-v", "2c", "-t", str(max(1, int(timeout))), "-r", "0",
                f"{host}:{r.server.port}", "", TRAP_OID, *snmp_varbinds(event)]
        env = {"SNMPCONFPATH": conf, "SNMP_PERSISTENT_DIR": conf, "MIBS": "", "MIBDIRS": conf}
        try:
            result = runner.run(argv, check=False, timeout=timeout + 2, env=env)
        except IscsihaError as exc:
            raise SendError(f"snmptrap to {r.server}: {exc}") from None
    if not result.ok:
        raise SendError(f"snmptrap to {r.server} exited {result.returncode}: "
                        f"{result.stderr.strip()[:200]}")


def send_syslog(event: Event, r: Recipient, timeout: float) -> None:
    """The journal has it already (``journal``): this is the remote copy, if any."""
    if r.server is None:
        return
    try:
        info = socket.getaddrinfo(r.server.host, r.server.port, type=socket.SOCK_DGRAM)[0]
        with socket.socket(info[0], socket.SOCK_DGRAM) as sock:
            sock.settimeout(timeout)
            sock.sendto(syslog_line(event, socket.gethostname())[:8192], info[4])
    except (OSError, UnicodeError) as exc:
        raise SendError(f"syslog {r.server}: {exc}") from None


def journal(event: Event) -> None:
    """This box's journal (through /dev/log, which journald owns), always."""
    syslog.openlog(SYSLOG_IDENT, syslog.LOG_PID, syslog.LOG_DAEMON)
    syslog.syslog(_SYSLOG_PRIORITY[event.severity], event.to_json())
    syslog.closelog()


# -- all of them -----------------------------------------------------------------------

@dataclass(frozen=True)
class Outcome:
    recipient: str
    error: str | None  # None: sent


Sender = Callable[[Event, Recipient, float], None]


def senders(runner: Runner) -> dict[RecipientKind, Sender]:
    return {RecipientKind.WEBHOOK: send_webhook, RecipientKind.EMAIL: send_email,
            RecipientKind.SYSLOG: send_syslog,
            RecipientKind.SNMP: lambda e, r, t: send_snmp(e, r, t, runner)}


def send_all(event: Event, recipients: Sequence[Recipient],
             by_kind: dict[RecipientKind, Sender], deadline_s: float = DEADLINE_S,
             timeout_s: float = SEND_TIMEOUT_S) -> list[Outcome]:
    """Every recipient in parallel; whoever has not finished by the deadline failed."""
    results: dict[str, str | None] = {}
    lock = threading.Lock()

    def one(r: Recipient) -> None:
        try:
            by_kind[r.kind](event, r, timeout_s)
            error = None
        except SendError as exc:
            error = str(exc)
        except Exception as exc:  # one recipient's bug must not stop the others
            error = f"{type(exc).__name__}: {str(exc)[:200]}"
        with lock:
            results[r.name] = error

    threads = [threading.Thread(target=one, args=(r,), daemon=True) for r in recipients]
    end = time.monotonic() + deadline_s
    for t in threads:
        t.start()
    for t in threads:
        t.join(max(0.0, end - time.monotonic()))
    with lock:
        late = f"no answer within {deadline_s:g} s"
        return [Outcome(r.name, results.get(r.name, late)) for r in recipients]
