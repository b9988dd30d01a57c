"""First-boot network files from the EFI partition (image/rootfs/usr/lib/iscsiha/provision).

`provision network SRC DEST` runs only that step, on plain folders here; the whole
provisioning from a flashed ESP is proven by tests/image/test_image_flash.py.
"""

from __future__ import annotations

import subprocess
from pathlib import Path

SCRIPT = Path(__file__).resolve().parents[2] / "image/rootfs/usr/lib/iscsiha/provision"


def _provision(src: Path, dest: Path) -> str:
    done = subprocess.run(["bash", str(SCRIPT), "network", str(src), str(dest)],
                          capture_output=True, text=True, check=True)
    return done.stdout


def test_network_and_netdev_files_are_copied_without_dos_line_ends(tmp_path: Path) -> None:
    src = tmp_path / "network"
    src.mkdir()
    (src / "10-mgmt.network").write_bytes(b"[Match]\r\nName=ens3\r\n[Network]\r\nDHCP=yes\r\n")
    (src / "20-bond0.netdev").write_text("[NetDev]\nName=bond0\nKind=bond\n")
    out = _provision(src, tmp_path / "etc")
    assert (tmp_path / "etc/10-mgmt.network").read_text() == \
        "[Match]\nName=ens3\n[Network]\nDHCP=yes\n"
    assert (tmp_path / "etc/20-bond0.netdev").read_text().startswith("[NetDev]")
    assert oct((tmp_path / "etc/10-mgmt.network").stat().st_mode & 0o777) == "0o644"
    assert "copied 2 network file(s)" in out


def test_bad_names_sizes_and_contents_are_refused_with_a_reason(tmp_path: Path) -> None:
    src = tmp_path / "network"
    src.mkdir()
    (src / "bad name.network").write_text("[Match]\n")
    (src / "notes.txt").write_text("hello\n")
    (src / "big.network").write_text("#" * 70000)
    (src / "binary.network").write_bytes(b"[Match]\x00\x01\n")
    (src / "link.network").symlink_to("/etc/passwd")
    (src / "ok.network").write_text("[Match]\nName=ens4\n")
    out = _provision(src, tmp_path / "etc")
    assert sorted(p.name for p in (tmp_path / "etc").iterdir()) == ["ok.network"]
    assert "refused iscsiha/network/bad name.network: a name of letters" in out
    assert "refused iscsiha/network/notes.txt: a name of letters" in out
    assert "refused iscsiha/network/big.network: 70000 bytes, at most 65536" in out
    assert "refused iscsiha/network/binary.network: not plain text" in out
    assert "refused iscsiha/network/link.network: not a regular file" in out
    assert "copied 1 network file(s)" in out


def test_more_files_than_the_limit_are_refused(tmp_path: Path) -> None:
    src = tmp_path / "network"
    src.mkdir()
    for i in range(34):
        (src / f"{i:02}.network").write_text("[Match]\n")
    out = _provision(src, tmp_path / "etc")
    assert len(list((tmp_path / "etc").iterdir())) == 32
    assert out.count("more than 32 files") == 2
