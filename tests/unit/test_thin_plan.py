"""The thin example (two-node.toml with examples/thin.toml appended) plans to its golden
files; a resource with thin volumes gets DRBD's discard options, one without does not."""

from __future__ import annotations

from pathlib import Path

from iscsiha.cli.main import main
from iscsiha.model.load import load_text
from iscsiha.plan.drbd import resource_file
from iscsiha.plan.plan import make_plan
from tests.conftest import EXAMPLE
from tests.unit.test_plan_golden import _files, matches_golden

GOLDEN = Path(__file__).resolve().parent.parent / "golden" / "thin"
THIN_TEXT = EXAMPLE.read_text() + "\n" + (EXAMPLE.parent / "thin.toml").read_text()
THIN_OPTIONS = ("        discard-zeroes-if-aligned yes;\n"
                "        rs-discard-granularity 65536;\n")


def test_the_thin_example_plans_to_its_golden_files(tmp_path: Path) -> None:
    desired = tmp_path / "thin.toml"
    desired.write_text(THIN_TEXT)
    assert main(["plan", str(desired), "--output-dir", str(tmp_path / "out")]) == 0
    matches_golden(_files(tmp_path / "out"), GOLDEN)


def test_only_a_resource_with_thin_volumes_gets_the_discard_options() -> None:
    config = load_text(THIN_TEXT)
    plan = make_plan(config, {})
    targets = {t.name: t for t in config.targets}
    text = {name: resource_file(config, targets[name], res, b"k" * 32)
            for name, res in plan.drbd.items()}
    assert THIN_OPTIONS in text["vdi"]
    assert all("discard-zeroes" not in text[t] and "rs-discard" not in text[t]
               for t in ("vm", "backup"))
    # Inside the disk section, before the volumes.
    disk = text["vdi"].index("    disk {")
    assert disk < text["vdi"].index(THIN_OPTIONS) < text["vdi"].index("    volume 0 {")
