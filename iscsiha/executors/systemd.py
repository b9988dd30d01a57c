"""systemd over D-Bus (dbus-python): the only module that imports dbus.

Start, stop, enable and disable units and read their state through systemd's
Manager API, with no systemctl subprocess in between.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from typing import Any

from iscsiha.errors import IscsihaError

_BUS_NAME = "org.freedesktop.systemd1"
_MANAGER_PATH = "/org/freedesktop/systemd1"
_MANAGER = "org.freedesktop.systemd1.Manager"
_UNIT = "org.freedesktop.systemd1.Unit"
_PROPERTIES = "org.freedesktop.DBus.Properties"


class Systemd:
    """Constructing it touches nothing; the system bus is opened on first use."""

    def __init__(self) -> None:
        self._dbus: Any = None
        self._bus: Any = None

    def _manager(self) -> Any:
        if self._bus is None:
            import dbus  # imported here: the module is only on boxes with a system bus

            self._dbus = dbus
            self._bus = dbus.SystemBus()
        return self._dbus.Interface(self._bus.get_object(_BUS_NAME, _MANAGER_PATH), _MANAGER)

    def start(self, unit: str, timeout: float = 90.0) -> None:
        self._call("StartUnit", unit, "replace")
        self.wait(unit, ("active",), timeout)

    def stop(self, unit: str, timeout: float = 90.0) -> None:
        self._call("StopUnit", unit, "replace")
        # A daemon that exits non-zero on SIGTERM (corosync-qdevice does, at times)
        # leaves its unit failed: stopped all the same.
        self.wait(unit, ("inactive", "failed"), timeout)

    def enable(self, *units: str) -> None:
        self._call("EnableUnitFiles", list(units), False, True)
        self._call("Reload")

    def disable(self, *units: str) -> None:
        self._call("DisableUnitFiles", list(units), False)
        self._call("Reload")

    def start_transient(self, unit: str, argv: Sequence[str], description: str,
                        runtime_max: float) -> None:
        """Run ``argv`` as a transient service (systemd-run without the subprocess).

        systemd stops it after ``runtime_max`` seconds and forgets it once it has
        ended, failed or not, so the name is free for the next one.
        """
        self._manager()  # opens the bus, so self._dbus is the module
        dbus = self._dbus
        exec_start = dbus.Array([dbus.Struct(
            (argv[0], dbus.Array(list(argv), signature="s"), False), signature="sasb")],
            signature="(sasb)")
        properties = dbus.Array([
            ("Description", dbus.String(description)),
            ("ExecStart", exec_start),
            ("RuntimeMaxUSec", dbus.UInt64(int(runtime_max * 1_000_000))),
            ("CollectMode", dbus.String("inactive-or-failed")),
        ], signature="(sv)")
        self._call("StartTransientUnit", unit, "fail", properties,
                   dbus.Array([], signature="(sa(sv))"))

    def active_state(self, unit: str) -> str:
        path = self._call("LoadUnit", unit)
        props = self._dbus.Interface(self._bus.get_object(_BUS_NAME, path), _PROPERTIES)
        return str(props.Get(_UNIT, "ActiveState"))

    def reboot(self) -> None:
        """A clean reboot (what `systemctl reboot` queues); returns once it is queued."""
        self._call("StartUnit", "reboot.target", "replace-irreversibly")

    def unit_file_state(self, unit: str) -> str:
        return str(self._call("GetUnitFileState", unit))

    def wait(self, unit: str, states: tuple[str, ...], timeout: float) -> None:
        """Until the unit reaches one of ``states``; failed (unless one of them) or the
        deadline is an error."""
        deadline = time.monotonic() + timeout
        while (now := self.active_state(unit)) not in states:
            if now == "failed" or time.monotonic() > deadline:
                raise IscsihaError.single(
                    "unit-state", "unit", unit,
                    f"reaching {' or '.join(states)} within {timeout:.0f} s",
                    f"is {now}")
            time.sleep(0.2)

    def _call(self, method: str, *args: Any) -> Any:
        try:
            return getattr(self._manager(), method)(*args)
        except Exception as exc:  # dbus.DBusException: its module is imported lazily
            if self._dbus is None or not isinstance(exc, self._dbus.DBusException):
                raise
            raise IscsihaError.single("systemd-refused", "unit", " ".join(map(str, args)),
                                      f"a call systemd accepts ({method})",
                                      exc.get_dbus_message() or str(exc)) from exc
