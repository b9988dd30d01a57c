"""`iscsiha-lab lio-bench`'s options, checked before the lab is touched."""

from __future__ import annotations

import pytest
from iscsiha_lab.failover_bench import MAX_LUNS
from iscsiha_lab.lio_bench import parse_options

from iscsiha.errors import IscsihaError


def test_lun_counts_and_runs_are_checked_before_anything_runs() -> None:
    assert parse_options("1, 64", 3) == [1, 64]
    for bad in ("", "0", "-1", "1,,64", "abc", str(MAX_LUNS + 1), "1e3"):
        with pytest.raises(IscsihaError) as caught:
            parse_options(bad, 3)
        assert caught.value.reports[0].value == bad
    for runs in (0, -1, 21):
        with pytest.raises(IscsihaError):
            parse_options("1", runs)
