"""`iscsiha standby NODE` / `unstandby NODE`: what is refused, what is asked of
Pacemaker, and what is checked after (a fake CIB and crm_mon)."""

from __future__ import annotations

import pytest

from iscsiha.commands.standby import standby
from iscsiha.commands.targets import status
from iscsiha.errors import IscsihaError
from iscsiha.status_report import Health, assess
from iscsiha.views import status_lines
from tests.unit.env_fakes import fake_env
from tests.unit.test_status import CIB


class StandbyPacemaker:
    """crm_mon's answer follows the standby attribute: a node in standby runs nothing."""

    def __init__(self, standby: set[str] | None = None, b_online: bool = True,
                 stuck: bool = False) -> None:
        self.in_standby = set(standby or ())
        self.b_online = b_online
        self.stuck = stuck  # the target does not leave (a failed stop, say)
        self.calls: list[tuple[str, bool]] = []

    def query(self) -> str:
        return CIB

    def status(self) -> str:
        serving = "san-b" if "san-a" in self.in_standby and not self.stuck else "san-a"
        nodes = "".join(
            f'<node name="{n}" online="{"true" if n == "san-a" or self.b_online else "false"}" '
            f'standby="{"true" if n in self.in_standby else "false"}"/>'
            for n in ("san-a", "san-b"))
        return (f'<pacemaker-result><summary><current_dc present="true" with_quorum="true"/>'
                f"</summary><nodes>{nodes}</nodes><resources>"
                f'<group id="target-vm"><resource id="target-vm-lio" role="Started">'
                f'<node name="{serving}"/></resource></group></resources></pacemaker-result>')

    def standby(self, node: str, on: bool) -> None:
        self.calls.append((node, on))
        (self.in_standby.add if on else self.in_standby.discard)(node)

    def wait(self, timeout: float) -> None:
        pass


def run(pacemaker: StandbyPacemaker, node: str, on: bool) -> list[str]:
    said: list[str] = []
    standby(fake_env(pacemaker), node, on, 60, said.append)  # type: ignore[arg-type]
    return said


def test_standby_moves_the_targets_off_and_status_says_degraded() -> None:
    pacemaker = StandbyPacemaker()
    said = run(pacemaker, "san-a", True)
    assert pacemaker.calls == [("san-a", True)]
    assert said == ["san-a: standby on; moving vm to the other box"]
    state = status(pacemaker)  # type: ignore[arg-type]
    assert state.targets[0].running_on == ("san-b",)
    health, reasons = assess(state)
    assert health is Health.DEGRADED and reasons[0] == "node san-a is in standby"
    assert "node    san-a                    online, in standby" in status_lines(state)
    run(pacemaker, "san-a", False)
    assert pacemaker.calls[-1] == ("san-a", False) and not pacemaker.in_standby


@pytest.mark.parametrize(("pacemaker", "node", "code"), [
    (StandbyPacemaker(b_online=False), "san-a", "standby-last-box"),
    (StandbyPacemaker(standby={"san-b"}), "san-a", "standby-last-box"),
    (StandbyPacemaker(), "san-c", "unknown-node"),
])
def test_what_would_stop_every_target_is_refused_and_nothing_is_asked(
        pacemaker: StandbyPacemaker, node: str, code: str) -> None:
    with pytest.raises(IscsihaError) as caught:
        run(pacemaker, node, True)
    assert [r.code for r in caught.value.reports] == [code]
    assert pacemaker.calls == []


def test_a_target_that_does_not_leave_is_reported() -> None:
    with pytest.raises(IscsihaError) as caught:
        run(StandbyPacemaker(stuck=True), "san-a", True)
    (report,) = caught.value.reports
    assert report.code == "standby-incomplete" and "vm" in report.message


def test_standby_twice_asks_nothing_the_second_time() -> None:
    pacemaker = StandbyPacemaker(standby={"san-a"})
    assert run(pacemaker, "san-a", True) == ["san-a is already in standby"]
    assert pacemaker.calls == []
