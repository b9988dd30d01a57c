"""The console's /box/networks: this box's networks edited, applied as a trial, confirmed."""

from __future__ import annotations

from pathlib import Path

from tests.unit.console_fakes import Harness


def test_networks_are_added_applied_and_confirmed_from_the_console(tmp_path: Path) -> None:
    h = Harness(tmp_path)
    assert h.run("/box/networks add name=link0 link=eno1 address=10.10.0.11/24") == 0
    assert h.run("/box/networks add name=repl link=eno2 address=10.20.0.11/24 mtu=9000") == 0
    h.run("/box/networks show")
    assert "CHANGED, not applied" in h.out.getvalue()
    assert h.run("/box/networks apply within=30") == 0
    assert "applied as trial" in h.out.getvalue()
    folder = tmp_path / "box/etc/systemd/network"
    assert "MTUBytes=9000" in (folder / "10-iscsiha-eno2.network").read_text()
    h.run("ls /box")
    assert "TRIAL" in h.out.getvalue()
    assert h.run("/box/networks confirm") == 0
    h.run("/box/networks show")
    assert h.out.getvalue().rstrip().endswith("applied")
    assert h.unchanged()  # the cluster's desired state is not this


def test_a_bad_value_is_refused_naming_it_and_nothing_is_saved(tmp_path: Path) -> None:
    h = Harness(tmp_path)
    h.run("/box/networks add name=link0 link=eno1 address=10.10.0.11/24")
    before = (tmp_path / "box/network.toml").read_text()
    h.run("/box/networks add name=repl link=eno2 address=10.20.0.11 mtu=9000")
    assert "10.20.0.11" in h.err.getvalue() + h.out.getvalue()
    h.run("/box/networks add name=repl link=eno2 address=10.20.0.11/24 mtu=big")
    assert "big" in h.err.getvalue() + h.out.getvalue()
    assert (tmp_path / "box/network.toml").read_text() == before


def test_a_nic_the_box_lacks_is_refused_at_apply(tmp_path: Path) -> None:
    h = Harness(tmp_path)
    h.run("/box/networks add name=link0 link=eth7 address=10.10.0.11/24")
    h.run("/box/networks apply")
    assert "eth7" in h.err.getvalue() + h.out.getvalue()
    assert not (tmp_path / "box/etc/systemd/network").exists()
