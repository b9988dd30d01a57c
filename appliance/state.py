"""The console's view of the desired state: read it, change a copy, validate, apply, save.

Every change follows one path (``State.change``): the current desired state is
read afresh, a copy is edited, the whole config is validated, the result is
applied through the backend, and only an apply that succeeded is saved (with the
previous state kept as a backup). Bad input therefore changes nothing.
"""

from __future__ import annotations

import copy
import tomllib
from collections.abc import Callable, Mapping
from datetime import datetime
from typing import Any, Protocol

from iscsiha.audit import Record
from iscsiha.commands.apply import Approve, Changes
from iscsiha.commands.apply_losses import Loss
from iscsiha.commands.bootstrap_env import InitResult
from iscsiha.commands.bootstrap_params import HeldAddress, InitRequest
from iscsiha.commands.config import validate
from iscsiha.commands.network import NetworkEnv
from iscsiha.commands.targets import ClusterStatus, TargetStatus
from iscsiha.commands.tiebreaker import TiebreakerAccess
from iscsiha.commands.timeline import TimelineReport
from iscsiha.commands.upgrade_pair import PairUpgrade
from iscsiha.console.files import Backups
from iscsiha.errors import IscsihaError
from iscsiha.model.toml_edit import update
from iscsiha.model.types import Config

Progress = Callable[[str], None]
Data = dict[str, Any]


class Backend(Protocol):
    """Everything the console does outside itself; the real one is iscsiha.console.backend."""

    def load_desired(self) -> str: ...

    def save_desired(self, text: str) -> None: ...

    def apply(self, config: Config, text: str, confirmed_deletes: frozenset[str],
              progress: Progress, approve: Approve) -> Changes: ...

    def status(self) -> ClusterStatus: ...

    def timeline(self, iqns: Mapping[str, str]) -> TimelineReport: ...

    def move(self, target: str, node: str, timeout: float, progress: Progress) -> float: ...

    def standby(self, node: str, on: bool, timeout: float,
                progress: Progress) -> tuple[TargetStatus, ...]: ...

    def seen_initiators(self) -> list[str]: ...

    def audit(self, since: datetime | None) -> list[Record | None]: ...

    def support_bundle(self, since: str, output: str | None,
                       progress: Progress) -> tuple[str, int]: ...

    # -- forming the cluster (iscsiha.commands.bootstrap) --------------------------------

    def init_cluster(self, request: InitRequest, access: TiebreakerAccess,
                     progress: Progress) -> InitResult: ...

    def join_cluster(self, token: str, progress: Progress) -> Config: ...

    def replace_box(self, node: str, progress: Progress) -> InitResult: ...

    def upgrade_pair(self, path: str, progress: Progress) -> PairUpgrade: ...

    def root_shell(self) -> int: ...

    def hostname(self) -> str: ...

    def local_addresses(self) -> list[HeldAddress]: ...

    def network_env(self) -> NetworkEnv: ...


def parse(text: str, source: str) -> Data:
    try:
        return tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise IscsihaError.single(
            "config-syntax", source, str(exc), "valid TOML (https://toml.io)",
            "cannot be read as TOML") from exc


class State:
    """The desired state as last read, the cluster status once per command, and changes."""

    def __init__(self, backend: Backend, backups: Backups, *, source: str = "desired state",
                 progress: Progress = lambda _message: None,
                 ask: Callable[[str], bool] = lambda _question: False,
                 ask_secret: Callable[[str], str] = lambda _prompt: "") -> None:
        self.backend = backend
        self.backups = backups
        self.source = source
        self.progress = progress
        self.ask = ask
        self.ask_secret = ask_secret
        self._data: Data | None = None
        self._load_error: IscsihaError | None = None
        self._status: ClusterStatus | None = None
        self._status_error: IscsihaError | None = None
        self._status_read = False
        self._confirmed = False

    def begin(self, confirm: str | None) -> None:
        """A new command line; ``confirm``: its confirm=yes, if it had one."""
        self._confirmed = False
        if confirm is not None:
            self.confirm("", confirm, "confirm", confirm)

    def refresh(self) -> None:
        """Forget what was read: the other box or an editor may have changed it."""
        self._data = None
        self._load_error = None
        self._status = None
        self._status_error = None
        self._status_read = False

    # -- reading ------------------------------------------------------------------------

    def data(self) -> Data:
        """The desired state as plain tables; raises IscsihaError when it cannot be read."""
        if self._data is None and self._load_error is None:
            try:
                self._data = parse(self.backend.load_desired(), self.source)
            except IscsihaError as exc:
                self._load_error = exc
        if self._load_error is not None:
            raise self._load_error
        assert self._data is not None
        return self._data

    def data_or_empty(self) -> Data:
        """For display and completion, which must work even on a missing or broken file."""
        try:
            return self.data()
        except IscsihaError:
            return {}

    @property
    def load_error(self) -> IscsihaError | None:
        self.data_or_empty()
        return self._load_error

    def status(self) -> ClusterStatus:
        """The cluster's status, asked once per command."""
        if not self._status_read:
            self._status_read = True
            try:
                self._status = self.backend.status()
            except IscsihaError as exc:
                self._status_error = exc
        if self._status_error is not None:
            raise self._status_error
        assert self._status is not None
        return self._status

    def status_or_none(self) -> ClusterStatus | None:
        """For summaries: the tree still shows the desired state when the cluster is down."""
        try:
            return self.status()
        except IscsihaError:
            return None

    # -- changing -----------------------------------------------------------------------

    def change(self, edit: Callable[[Data], None],
               confirmed_deletes: frozenset[str] = frozenset()) -> Changes:
        """Edit a copy of the desired state, then validate, apply and save it.

        The edit is written into the previous text, so the admin's comments stay.
        """
        self.refresh()
        previous = self.backend.load_desired()
        data = copy.deepcopy(parse(previous, self.source))
        edit(data)
        return self.replace(update(previous, data), previous, confirmed_deletes)

    def replace(self, text: str, previous: str | None,
                confirmed_deletes: frozenset[str] = frozenset()) -> Changes:
        """Validate, apply and save ``text`` as the new desired state."""
        self.refresh()
        config, _warnings = validate(text, self.source)
        changes = self.backend.apply(config, text, confirmed_deletes, self.progress,
                                     self._approve)
        if previous is not None:
            self.backups.save(previous)
        self.backend.save_desired(text)
        self.refresh()
        return changes

    def confirm(self, question: str, confirm: str | None, field: str, value: object) -> None:
        """Go on only when ``confirm=yes`` was given or the admin answers yes."""
        if confirm is not None:
            if confirm.lower() not in ("yes", "y", "true"):
                raise IscsihaError.single("bad-value", "confirm", confirm, "yes",
                                          "leave it out to be asked")
        elif not self._confirmed and not self.ask(question):
            raise IscsihaError.single("not-confirmed", field, value,
                                      "confirm=yes, or the answer y",
                                      "was not confirmed; nothing was changed")
        # One yes per command line: the apply it leads to does not ask again.
        self._confirmed = True

    def _approve(self, losses: tuple[Loss, ...]) -> None:
        """Apply's question when initiators would lose something (apply.Approve)."""
        listed = "".join(f"\n  - {loss}" for loss in losses)
        self.confirm(f"This change takes away what initiators use:{listed}\nGo on?", None,
                     "change", f"{len(losses)} loss(es)")
