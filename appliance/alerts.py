"""/alerts: who hears about a box lost, a failover, DRBD trouble (docs/alerts.md)."""

from __future__ import annotations

from typing import Any

from iscsiha.console.base import ConsoleNode, Summary
from iscsiha.console.edits import Data, find, named, tables
from iscsiha.console.state import State
from iscsiha.errors import IscsihaError
from iscsiha.model.alerts import SECRET_KEY
from iscsiha.model.fields import (
    ALERTS,
    FROM,
    KIND,
    NAME,
    RECIPIENTS,
    SERVER,
    STARTTLS,
    TO,
    URL,
    USER,
    VG_FILL_PERCENT,
)
from iscsiha.model.types import DEFAULT_VG_FILL_PERCENT, RecipientKind

# Where each kind keeps the one secret the console's `secret` parameter gives (a kind
# without one gets the key `secret`, which the model refuses, naming it).
_SECRET_KEY = {k.value: key for k, key in SECRET_KEY.items()}


class AlertsNode(ConsoleNode):
    def __init__(self, parent: ConsoleNode, state: State) -> None:
        super().__init__("alerts", parent, state)

    def _recipients(self) -> list[dict[str, Any]]:
        return tables(self.state.data_or_empty().get(ALERTS) or {}, RECIPIENTS)

    def summary(self) -> Summary:
        alerts = self.state.data_or_empty().get(ALERTS) or {}
        found = [f"{r.get(NAME)} ({r.get(KIND)})" for r in self._recipients()]
        percent = alerts.get(VG_FILL_PERCENT, DEFAULT_VG_FILL_PERCENT)
        if not found:
            return "no recipients: events reach each box's journal only", None
        return f"to {', '.join(found)}; volume group alert at {percent} %", None

    def ui_command_add(self, name: str, kind: str, server: str | None = None,
                       sender: str | None = None, to: str | None = None,
                       user: str | None = None, url: str | None = None,
                       starttls: str | None = None, secret: str | None = None) -> None:
        """
        Adds a recipient of the cluster's alerts. Its secret (email password,
        SNMP community, webhook token) is never typed into the line: give
        `secret=-` and it is asked at the terminal without echo, or read from
        stdin by a script. Applied to both boxes at once.

        PARAMETERS
        ==========

        name
        ----
        The recipient's name: lowercase letters, digits and '-'.

        kind
        ----
        email, snmp, webhook or syslog.

        server
        ------
        HOST[:PORT]: the SMTP relay (email), the trap receiver (snmp, v2c), a
        remote syslog over UDP (syslog; left out: the journal only).

        sender
        ------
        email: the From address.

        to
        --
        email: the addresses, separated by commas.

        user
        ----
        email: the SMTP login (with secret=- for its password).

        url
        ---
        webhook: the http or https URL the event is POSTed to as JSON.

        starttls
        --------
        email: yes (default) or no.

        secret
        ------
        `-`: the email password, the SNMP community or the webhook's bearer
        token, asked for.

        EXAMPLE
        =======
        add name=chatops kind=webhook url=https://hooks.example.com/iscsiha secret=-

        SEE ALSO
        ========
        remove threshold
        """
        if kind not in {k.value for k in RecipientKind}:
            raise IscsihaError.single("bad-choice", "kind", kind,
                                      ", ".join(k.value for k in RecipientKind))
        recipient: dict[str, Any] = {NAME: name, KIND: kind}
        for key, value in ((SERVER, server), (FROM, sender), (USER, user), (URL, url)):
            if value is not None:
                recipient[key] = value
        if to is not None:
            recipient[TO] = [a for a in to.split(",") if a]
        if starttls is not None:
            recipient[STARTTLS] = yes_no("starttls", starttls)
        wanted = kind == "snmp" or (kind == "email" and user is not None)
        if secret is not None or wanted:
            recipient[_SECRET_KEY.get(kind, "secret")] = secret or self.state.ask_secret(
                f"{name}'s {_SECRET_KEY.get(kind, 'secret')} (not echoed): ")

        def edit(data: Data) -> None:
            alerts = data.setdefault(ALERTS, {})
            if name in named(alerts, RECIPIENTS):
                raise IscsihaError.single("duplicate-recipient-name", "recipient", name,
                                          "a name no recipient has yet", "already exists")
            alerts.setdefault(RECIPIENTS, []).append(recipient)

        self.state.change(edit)
        self.say(f"added recipient {name} ({kind})")

    def ui_command_remove(self, name: str) -> None:
        """
        Removes a recipient of the alerts.

        PARAMETERS
        ==========

        name
        ----
        The recipient.

        EXAMPLE
        =======
        remove name=chatops

        SEE ALSO
        ========
        add
        """
        def edit(data: Data) -> None:
            alerts = data.get(ALERTS) or {}
            alerts[RECIPIENTS].remove(find(alerts, RECIPIENTS, name, "recipient"))
            if not alerts[RECIPIENTS]:
                del alerts[RECIPIENTS]

        self.state.change(edit)
        self.say(f"removed recipient {name}")

    def ui_command_threshold(self, percent: str) -> None:
        """
        Sets how full a data volume group may get before the vg-filling alert.

        PARAMETERS
        ==========

        percent
        -------
        50 to 99 (default 85).

        EXAMPLE
        =======
        threshold percent=90

        SEE ALSO
        ========
        add
        """
        value: Any = int(percent) if percent.isdigit() and len(percent) < 4 else percent

        def edit(data: Data) -> None:
            data.setdefault(ALERTS, {})[VG_FILL_PERCENT] = value

        self.state.change(edit)
        self.say(f"volume group alert at {percent} %")


def yes_no(name: str, text: str) -> bool:
    if text.lower() in ("yes", "y", "true"):
        return True
    if text.lower() in ("no", "n", "false"):
        return False
    raise IscsihaError.single("bad-value", name, text, "yes or no")
