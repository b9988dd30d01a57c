"""Two root trees for the carry tests: a box's running root (a cluster member, or a fresh
box) and a new release's root, whose system users have other ids than the box's."""

from __future__ import annotations

import json
import os
from pathlib import Path

from iscsiha.plan import corosync, drbd
from tests.conftest import skip_or_fail

# Old root: hacluster 105, haclient 110. New root: a new system user took 105 and 110,
# so hacluster is 107 and haclient 113 there.
OLD_PASSWD = ("root:x:0:0:root:/root:/bin/bash\n"
              "hacluster:x:105:110::/var/lib/pacemaker:/usr/sbin/nologin\n"
              "admin:x:1000:1000:iscsiha administrator:/home/admin:/usr/lib/iscsiha/admin-shell\n"
              "legacy:x:1200:1200::/nonexistent:/usr/sbin/nologin\n")
OLD_GROUP = ("root:x:0:\nshadow:x:42:\nsudo:x:27:admin\nhaclient:x:110:admin\n"
             "admin:x:1000:\nlegacy:x:1200:\n")
OLD_SHADOW = ("root:*:19000:0:99999:7:::\nhacluster:!:19000::::::\n"
              "admin:$y$j9T$oldsalt$oldhash:19500:0:99999:7:::\nlegacy:!:19000::::::\n")
OLD_GSHADOW = "root:*::\nshadow:*::\nsudo:*::admin\nhaclient:!::admin\nadmin:!::\nlegacy:!::\n"
NEW_PASSWD = ("root:x:0:0:root:/root:/bin/bash\n"
              "_newsvc:x:105:110::/nonexistent:/usr/sbin/nologin\n"
              "hacluster:x:107:113::/var/lib/pacemaker:/usr/sbin/nologin\n"
              "admin:x:1000:1000:iscsiha administrator:/home/admin:/usr/lib/iscsiha/admin-shell\n")
NEW_GROUP = ("root:x:0:\nshadow:x:42:\nsudo:x:27:\n_newsvc:x:110:\nhaclient:x:113:\n"
             "admin:x:1000:\n")
NEW_SHADOW = ("root:*:19000:0:99999:7:::\n_newsvc:!:19900::::::\nhacluster:!:19000::::::\n"
              "admin:*:19900:0:99999:7:::\n")
NEW_GSHADOW = "root:*::\nshadow:*::\nsudo:*::\n_newsvc:!::\nhaclient:!::\nadmin:!::\n"
OLD_TIME = 1_600_000_000  # the box's files: long before the new root was built
DEBIAN_COROSYNC = "# Please read the corosync.conf.5 manual page\ntotem {\n}\n"


def need_root() -> None:
    if os.geteuid() != 0:
        skip_or_fail("carrying maps owners with chown: run the tests as root")


def put(root: Path, rel: str, text: str, mode: int = 0o644, owner: tuple[int, int] = (0, 0),
        mtime: int = OLD_TIME) -> Path:
    path = root / rel
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    os.chown(path, *owner)
    os.chmod(path, mode)
    os.utime(path, (mtime, mtime))
    return path


def folder(root: Path, rel: str, mode: int, owner: tuple[int, int] = (0, 0),
           mtime: int = OLD_TIME) -> Path:
    path = root / rel
    path.mkdir(parents=True, exist_ok=True)
    os.chown(path, *owner)
    os.chmod(path, mode)
    os.utime(path, (mtime, mtime))
    return path


def release(root: Path, version: str, commit: str, root_uuid: str) -> None:
    put(root, "usr/lib/iscsiha/release.json", json.dumps(
        {"format": 1, "kind": "iscsiha-root", "version": version, "commit": commit,
         "root_uuid": root_uuid}))


def fresh_box(root: Path) -> Path:
    """A box as provisioned: no cluster yet (Debian's example corosync.conf)."""
    release(root, "0.1.0", "1f0c" * 10, "6f2a3c1e-0b7d-5e4f-9a8b-1c2d3e4f5a6b")
    put(root, "etc/passwd", OLD_PASSWD)
    put(root, "etc/group", OLD_GROUP)
    put(root, "etc/shadow", OLD_SHADOW, 0o640, (0, 42))
    put(root, "etc/gshadow", OLD_GSHADOW, 0o640, (0, 42))
    put(root, "etc/machine-id", "0123456789abcdef0123456789abcdef\n", 0o444)
    put(root, "etc/hostname", "san-a\n")
    put(root, "etc/ssh/ssh_host_ed25519_key", "PRIVATE\n", 0o600)
    put(root, "etc/ssh/ssh_host_ed25519_key.pub", "ssh-ed25519 AAAA root@san-a\n")
    put(root, "etc/ssh/sshd_config", "# the old release's\n")
    put(root, "etc/corosync/corosync.conf", DEBIAN_COROSYNC)
    put(root, "var/lib/iscsiha/provisioned", "")
    folder(root, "home/admin/.ssh", 0o700, (1000, 1000))
    put(root, "home/admin/.ssh/authorized_keys", "ssh-ed25519 AAAA ops\n", 0o600, (1000, 1000))
    return root


def cluster_box(root: Path) -> Path:
    """A box in a cluster: desired state, peer channel, CIB, a DRBD resource."""
    fresh_box(root)
    put(root, "etc/corosync/corosync.conf", corosync.HEADER + "totem {\n}\n")
    put(root, "etc/corosync/authkey", "K" * 256, 0o400)
    folder(root, "etc/iscsiha", 0o755)
    put(root, "etc/iscsiha/desired.toml", "[cluster]\nname = 'san'\n", 0o600)
    put(root, "etc/iscsiha/alerts.json", "{}\n", 0o640, (0, 110))
    folder(root, "etc/iscsiha/ssh", 0o700)
    put(root, "etc/iscsiha/ssh/id_ed25519", "PEER KEY\n", 0o600)
    folder(root, "var/lib/pacemaker/cib", 0o750, (105, 110))
    put(root, "var/lib/pacemaker/cib/cib.xml", "<cib/>\n", 0o600, (105, 110))
    put(root, "etc/drbd.d/vm.res", drbd.HEADER + "resource vm {}\n", 0o600)
    put(root, "etc/drbd.d/global_common.conf", "# the old release's\n")
    wants = root / "etc/systemd/system/multi-user.target.wants"
    wants.mkdir(parents=True)
    (wants / "pacemaker.service").symlink_to("/usr/lib/systemd/system/pacemaker.service")
    (wants / "ssh.service").symlink_to("/usr/lib/systemd/system/ssh.service")
    return root


def new_root(root: Path) -> Path:
    """A new release's root as image/build makes it: nothing of any box in it."""
    release(root, "0.2.0", "abcd" * 10, "0d9e8f7a-6b5c-5d4e-8f3a-2b1c0d9e8f7a")
    put(root, "etc/passwd", NEW_PASSWD, mtime=OLD_TIME + 1000)
    put(root, "etc/group", NEW_GROUP, mtime=OLD_TIME + 1000)
    put(root, "etc/shadow", NEW_SHADOW, 0o640, (0, 42), OLD_TIME + 1000)
    put(root, "etc/gshadow", NEW_GSHADOW, 0o640, (0, 42), OLD_TIME + 1000)
    put(root, "etc/machine-id", "uninitialized\n", 0o444)
    put(root, "etc/hostname", "iscsiha\n")
    put(root, "etc/ssh/sshd_config", "# the new release's\n")
    put(root, "etc/corosync/corosync.conf", DEBIAN_COROSYNC + "# new release\n")
    put(root, "etc/iscsiha/data-disk", "auto\n")
    put(root, "etc/drbd.d/global_common.conf", "# the new release's\n")
    folder(root, "var/lib/pacemaker/cib", 0o750, (107, 113))
    folder(root, "home/admin", 0o755, (1000, 1000))
    folder(root, "usr/lib/systemd/system", 0o755)
    return root


def listing(root: Path) -> dict[str, tuple[int, int, int, int, bytes]]:
    """Every path below ``root``: mode, owner, group, mtime and content (a link's target)."""
    out = {}
    for here, dirs, names in os.walk(root):
        for name in dirs + names:
            path = os.path.join(here, name)
            st = os.lstat(path)
            data = (os.readlink(path).encode() if os.path.islink(path)
                    else Path(path).read_bytes() if os.path.isfile(path) else b"")
            out[os.path.relpath(path, root)] = (st.st_mode, st.st_uid, st.st_gid,
                                                st.st_mtime_ns, data)
    return out
