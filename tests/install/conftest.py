"""The install tier's Debian roots, one per release, and its timings in the summary.

Each root is a minimal Debian bootstrapped here with mmdebstrap, holding a copy of this
checkout at /srv/iscsiha, where tools/install-deps has run once. Needs root,
mmdebstrap and the network (Debian's mirror and PyPI); without them the tier skips,
and under CI=true it fails instead.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.conftest import ROOT, skip_or_fail
from tests.install import debian_root
from tests.install.debian_root import CHECKOUT, Installed

# The releases the README promises: Debian 12 and 13.
SUITES = ("bookworm", "trixie")
TIMES = pytest.StashKey[list[str]]()


@pytest.fixture(scope="module", params=SUITES)
def installed(request: pytest.FixtureRequest) -> Iterator[Installed]:
    reason = debian_root.lacking()
    if reason is not None:
        skip_or_fail(reason)
    suite: str = request.param
    times = request.config.stash.setdefault(TIMES, [])
    with debian_root.workdir() as work:
        root = work / suite
        seconds = debian_root.bootstrap(suite, root)
        debian_root.copy_checkout(ROOT, root)
        first = debian_root.run(root, [f"{CHECKOUT}/tools/install-deps"]).check()
        done = Installed(suite, root, first, times)
        done.note("mmdebstrap (minbase)", seconds)
        done.note("tools/install-deps, first run", first.seconds)
        yield done


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter,
                            config: pytest.Config) -> None:
    times = config.stash.get(TIMES, [])
    if times:
        terminalreporter.section("install tier: fresh Debian roots")
        for line in times:
            terminalreporter.write_line(line)
