"""What a box learns after it was flashed, and so must move into a new root slot
(``iscsiha upgrade stage``, docs/upgrade.md): one table, each entry with its reason.

Found by reading what writes state: provisioning (usr/lib/iscsiha/provision), the
first boot (machine id, SSH host keys, initiator name), the cluster's bootstrap and
join (corosync, the peer channel's keys, the services they enable), apply
(desired state, DRBD resources, fencing secrets, alerts), the box's own networks,
the console, the audit log, and what the services themselves keep (the CIB, LVM's
metadata copies). Everything else in the new root is the new release's: a file the
new release ships and the box never changes (/etc/default/sbd, Debian's example
corosync.conf, drbd.d/global_common.conf) is not carried.

The accounts files are never copied whole (a new release may add system users with
other ids): the product's own user is merged into the new root's files instead
(iscsiha.model.accounts).

Not carried, on purpose: the journal (up to 512 MiB; it stays readable in the old
slot, which is the way back), Pacemaker's scheduler history (/var/lib/pacemaker/
pengine) and blackbox, metrics output (rewritten every 30 s), LIO's saved config (the
cluster owns LIO), root's SSH keys (the peer channel uses /etc/iscsiha/ssh).
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import Enum

from iscsiha.plan import corosync, drbd, networkd


class Kind(Enum):
    FILE = "file"  # one file (or symlink)
    TREE = "tree"  # a folder and all below it, merged into the new root's: the box's
    #                files win, files only the new release has stay
    GLOB = "glob"  # the files in a folder whose names match ``pattern`` (not recursive)


@dataclass(frozen=True)
class Entry:
    path: str  # absolute, as on the box
    kind: Kind
    reason: str
    pattern: str = "*"  # GLOB only: fnmatch patterns, separated by spaces
    header: str = ""  # only files that start with this (written by iscsiha)


# The product's own user(s): their shadow line and group memberships are merged.
PRODUCT_USERS = ("admin",)
ADMIN_HOME = "/home/admin"
CARRIED_RECORD = "/var/lib/iscsiha/carried.json"

ENTRIES: tuple[Entry, ...] = (
    Entry("/etc/machine-id", Kind.FILE,
          "the box's id for systemd and the journal; with it the new root is no first "
          "boot (no presets applied, no new host keys made)"),
    Entry("/etc/hostname", Kind.FILE, "the host name: provisioning sets it from the ESP, "
                                      "and it is the cluster's node name"),
    Entry("/etc/hosts", Kind.FILE, "provisioning writes the host name's 127.0.1.1 line"),
    Entry("/etc/ssh", Kind.GLOB, "SSH host keys, made at the first boot: the peer's "
                                 "known_hosts and the admins' clients pin them",
          pattern="ssh_host_*"),
    Entry("/etc/iscsiha", Kind.TREE,
          "the desired state, network.toml, alerts.json, the peer channel's key, "
          "known_hosts and authorized_keys (ssh/), the console's backups, and data-disk "
          "(the admin's choice of disk)"),
    Entry("/var/lib/iscsiha", Kind.TREE,
          "the markers 'provisioned' (so the new root does not provision again) and "
          "'data-vg-created', the verify and space-alert records, a pending network trial"),
    Entry("/var/log/iscsiha", Kind.TREE, "the audit log (iscsiha audit, the timeline)"),
    Entry(networkd.DIRECTORY, Kind.TREE,
          "networkd files from provisioning, `iscsiha network` and the desired state"),
    Entry(corosync.PATH, Kind.FILE, "the cluster's membership and links (only the one "
                                    "iscsiha wrote: Debian's example stays the new "
                                    "release's)", header=corosync.HEADER),
    Entry(drbd.AUTHKEY_PATH, Kind.FILE,
          "the cluster's root secret (knet's key, DRBD's peer secrets)"),
    Entry("/etc/corosync/qdevice", Kind.TREE,
          "the tiebreaker's certificate database (nssdb) and node bundle"),
    Entry("/var/lib/corosync", Kind.TREE, "what corosync keeps across restarts (ring id)"),
    Entry("/etc/pacemaker/authkey", Kind.FILE, "Pacemaker's own key"),
    Entry("/var/lib/pacemaker/cib", Kind.TREE,
          "the CIB: resources, constraints, the appliance's properties"),
    Entry("/var/lib/pacemaker/lrm/secrets", Kind.TREE,
          "fencing passwords, which Pacemaker resolves lrm:// values from"),
    Entry(drbd.FOLDER.rstrip("/"), Kind.GLOB, "each target's DRBD resource, written by "
                                              "apply", pattern="*.res", header=drbd.HEADER),
    Entry("/etc/systemd/system/multi-user.target.wants", Kind.GLOB,
          "cluster init and join enable corosync, its qdevice and pacemaker: without "
          "these the box would not rejoin at boot",
          pattern="corosync.service corosync-qdevice.service pacemaker.service"),
    Entry("/etc/systemd/system/timers.target.wants", Kind.GLOB,
          "iscsiha-metrics.timer, enabled by hand (docs/deploy.md)",
          pattern="iscsiha-metrics.timer"),
    Entry("/etc/iscsi/initiatorname.iscsi", Kind.FILE,
          "this box's initiator name, made at the first boot"),
    Entry("/etc/lvm/backup", Kind.TREE, "LVM's copies of the data VG's metadata "
                                        "(vgcfgrestore)"),
    Entry("/etc/lvm/archive", Kind.TREE, "LVM's earlier copies of the VG's metadata"),
    Entry("/etc/lvm/devices", Kind.TREE, "LVM's devices file naming the data disk, if "
                                         "LVM keeps one"),
    Entry(f"{ADMIN_HOME}/.ssh", Kind.TREE, "admin's authorized_keys (from the ESP at "
                                           "provisioning, or added since)"),
    Entry("/root/.iscsiha-console", Kind.TREE, "the console's preferences and history "
                                               "(it runs as root through sudo)"),
)

