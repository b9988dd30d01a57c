"""The console's /pools and thin volumes: made, listed, grown, refused without a change."""

from __future__ import annotations

from pathlib import Path

from iscsiha.model.types import Pool
from tests.unit.console_fakes import Harness

GIB = 2**30


def test_a_pool_and_a_thin_volume_are_created_and_applied(tmp_path: Path) -> None:
    h = Harness(tmp_path)
    assert h.run("/pools create name=thin size=100G fill_alert_percent=75") == 0, \
        h.err.getvalue()
    assert h.backend.applied[-1].config.pools == (Pool("thin", "data", 100 * GIB, False, 75),)
    assert h.run("/volumes create name=vdi size=50G pool=thin") == 0, h.err.getvalue()
    assert h.backend.applied[-1].config.volume("vdi").pool == "thin"
    assert 'pool = "thin"' in h.desired.read_text()
    h.run("ls /")
    out = h.out.getvalue()
    assert "pools" in out and "1 thin pool" in out and "50G thin in pool thin" in out
    assert h.run("/volumes/vdi get volume pool") == 0 and "thin" in h.out.getvalue()


def test_a_pool_grows_takes_its_settings_and_never_shrinks(tmp_path: Path) -> None:
    h = Harness(tmp_path)
    assert h.run("/pools create name=thin size=100G") == 0
    assert h.run("/pools/thin resize 200G") == 0
    assert h.run("/pools/thin overcommit allow=yes") == 0
    assert h.run("/pools/thin threshold percent=90") == 0
    assert h.backend.applied[-1].config.pools == (Pool("thin", "data", 200 * GIB, True, 90),)
    applied = len(h.backend.applied)
    assert h.run("/pools/thin resize 100G") != 0
    assert "cannot shrink" in h.out.getvalue() + h.err.getvalue()
    assert h.run("/pools/thin threshold percent=100") != 0
    assert h.run("/pools/thin threshold percent=9x") != 0
    assert h.run("/pools/thin overcommit allow=maybe") != 0
    assert len(h.backend.applied) == applied


def test_refused_pool_changes_change_nothing(tmp_path: Path) -> None:
    h = Harness(tmp_path)
    assert h.run("/volumes create name=vdi size=50G pool=nowhere") != 0
    assert "nowhere" in h.out.getvalue() + h.err.getvalue()
    assert h.run("/pools create name=thin size=1G") == 0
    assert h.run("/volumes create name=vdi size=50G pool=thin") != 0  # 50G in a 1G pool
    assert "overcommit" in h.out.getvalue() + h.err.getvalue()
    assert h.run("/pools create name=thin size=1G") != 0  # the name is taken
    assert h.run("/pools create name=db size=1G") != 0  # db is a volume in data
    assert h.run("/pools create name=x size=1G overcommit=perhaps") != 0
    assert h.run("/volumes create name=vdi size=1G pool=thin") == 0
    assert h.run("/pools delete name=thin") != 0
    assert "vdi" in h.out.getvalue() + h.err.getvalue()
    assert [v.name for v in h.backend.applied[-1].config.thin_volumes("thin")] == ["vdi"]
    assert h.run("/volumes delete name=vdi confirm=yes") == 0
    assert h.run("/pools delete name=thin") == 0, h.err.getvalue()
    assert h.backend.applied[-1].config.pools == () and "pools" not in h.desired.read_text()
