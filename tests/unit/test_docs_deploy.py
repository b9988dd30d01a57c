"""docs/deploy.md's console lines, as typed, are what the console accepts: run in order
on a pair that `cluster init` just set up, they build the example's volumes, targets
and discovery CHAP."""

from __future__ import annotations

import tomllib
from pathlib import Path

import pytest

from iscsiha.model.load import load_text
from iscsiha.model.toml_dump import dumps
from tests.conftest import EXAMPLE, ROOT
from tests.unit.console_fakes import TOKEN, Harness

DEPLOY = ROOT / "docs" / "deploy.md"
# Asked in the order the lines ask them: the two BMC passwords of /cluster init, the token
# of /cluster join, then the CHAP secrets of the example, so the result can be compared
# with the example; last the alert recipient's SMTP password.
SECRETS = ["bmc-a-secret", "bmc-b-secret", TOKEN, "hv-Secret-0001", "san-Secret-0001",
           "backup-Secret-1", "disc0very-Secret", "smtp-Secret-01"]
# Console commands run without a path, as the walkthrough types them.
BARE = ("status", "ls")


def console_lines(markdown: str) -> list[str]:
    """The lines of the plain (console) code blocks, in order."""
    found: list[str] = []
    fence: str | None = None
    for line in markdown.splitlines():
        if line.startswith("```"):
            fence = None if fence is not None else line[3:]
            continue
        if fence == "" and (
                line.startswith("/") or line.split(" ")[0] in BARE):
            found.append(line)
    return found


def test_console_lines_are_found_in_sections_order() -> None:
    lines = console_lines("## A\n```\n/one\nstatus\n```\n```sh\n/not-console\n```\n"
                          "## B\n```\nls /targets\n```\n")
    assert lines == ["/one", "status", "ls /targets"]


@pytest.fixture
def pair_just_formed(tmp_path: Path) -> Harness:
    """The console over what `cluster init` writes: the example without its volumes,
    targets and discovery CHAP."""
    h = Harness(tmp_path)
    data = tomllib.loads(EXAMPLE.read_text())
    for table in ("volumes", "targets", "discovery_auth"):
        del data[table]
    h.desired.write_text(dumps(data))
    h.shell.sync()
    return h


def test_every_console_line_of_the_walkthrough_is_accepted_and_builds_the_example(
        pair_just_formed: Harness) -> None:
    h = pair_just_formed
    h.secrets = list(SECRETS)
    lines = console_lines(DEPLOY.read_text())
    assert any(line.startswith("/cluster init") for line in lines)
    for line in lines:
        status = h.run(line)
        assert status == 0, f"{line}\n{h.err.getvalue()}"
    assert h.secrets == []  # each secret asked where the walkthrough says it is
    networkd = h.backend.network_env().networkd
    assert networkd.trial() is None  # applied and confirmed
    assert "Gateway=10.0.0.1" in networkd.live()["10-iscsiha-eno0.network"]
    assert "Bond=bond0" in networkd.live()["10-iscsiha-ens1f1.network"]
    request = h.backend.inits[0][0]
    assert (request.name, request.peer, request.tiebreaker) == ("san", "san-b", "10.0.0.5")
    assert h.backend.joins == [TOKEN]
    built, example = load_text(h.desired.read_text()), load_text(EXAMPLE.read_text())
    assert built.volumes == example.volumes
    assert built.targets == example.targets
    assert built.cluster.discovery_auth == example.cluster.discovery_auth
    assert [(r.name, r.kind.value) for r in built.alerts.recipients] == [("ops-mail", "email")]
