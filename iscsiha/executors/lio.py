"""The kernel's LIO target via rtslib-fb: the only module that imports rtslib.

A target and all its LUNs are applied in one pass in-process (the stock agents
spawn targetcli once per LUN). Nothing is ever saved to /etc/target: the cluster
owns LIO, and the passive box must come up empty.

Changes are serialized between processes (Pacemaker starts and stops the targets of
one box at once): rtslib picks a new backstore's index from a cache each process reads
from configfs once, outside its own lock, so two processes could put their storage
objects under one `iblock_N`, and removing one then failed ("Directory not empty"),
a failed stop that got the box fenced in the lab (rtslib-fb issues #179, #180).
"""

from __future__ import annotations

import os
import re
from collections.abc import Iterable, Iterator, Mapping
from contextlib import contextmanager, suppress
from dataclasses import dataclass
from typing import Any

from iscsiha.errors import IscsihaError
from iscsiha.executors import aptpl, files
from iscsiha.executors.locks import exclusive
from iscsiha.model.types import AuthMode
from iscsiha.plan.agent_params import AuthParams, LunParam, TargetParams

TPG_TAG = 1
LOCK = "/run/iscsiha/lio.lock"
ISCSI_FABRIC_PATH = "/sys/kernel/config/target/iscsi"
DBROOT_PATH = "/sys/kernel/config/target/dbroot"  # where LIO writes pr/aptpl_SERIAL
_PRODUCT_MAX = 16  # SCSI INQUIRY product identification


@dataclass(frozen=True)
class Secrets:
    """CHAP secrets handed in by Pacemaker (never from argv or a world-readable file)."""

    chap: str | None = None
    mutual: str | None = None

    @classmethod
    def from_params(cls, params: Mapping[str, str]) -> Secrets:
        return cls(params.get("chap_secret"), params.get("mutual_secret"))


@dataclass(frozen=True)
class TargetState:
    enabled: bool
    portals: frozenset[tuple[str, int]]
    luns: Mapping[int, str]  # LUN number -> backing device
    acls: frozenset[str]


def backstore_name(lun: LunParam) -> str:
    return lun.volume


_REFUSED = re.compile(r"iSCSI Initiator Node: (\S+) is not authorized to access iSCSI "
                      r"target portal group")


def refused_initiators(kernel_log: str) -> tuple[str, ...]:
    """Initiators LIO turned away for want of an ACL, as the kernel logged them
    (iscsi_target_nego.c): the ones an admin is about to allow."""
    return tuple(sorted(set(_REFUSED.findall(kernel_log))))


class Lio:
    """Thin wrapper over rtslib; constructing it touches nothing."""

    def __init__(self, lock_path: str = LOCK) -> None:
        self._rtslib: Any = None
        self._lock_path = lock_path

    def _lib(self) -> Any:
        if self._rtslib is None:
            import rtslib_fb  # imported here: importing it loads configfs state

            self._rtslib = rtslib_fb
        return self._rtslib

    def _root(self) -> Any:
        return self._lib().RTSRoot()

    # -- reading ------------------------------------------------------------------------

    def target_state(self, iqn: str) -> TargetState | None:
        # Under the lock: a monitor must not read another target half made or removed.
        with self._exclusive() as lib:
            return _target_state(lib.RTSRoot(), iqn)

    def sessions(self, iqn: str) -> tuple[str, ...]:
        """Initiators logged in to ``iqn`` now, by their ACLs (LIO lists no ACL, and so no
        session here, for an initiator let in by generate_node_acls)."""
        target = next((t for t in self._root().targets if t.wwn == iqn), None)
        if target is None:
            return ()
        return tuple(sorted(acl.node_wwn for tpg in target.tpgs for acl in tpg.node_acls
                            if (acl.session or {}).get("state") == "LOGGED_IN"))

    def dump(self) -> dict[str, Any]:
        """LIO's whole configuration as rtslib saves it, CHAP passwords included (a
        support bundle redacts them); IscsihaError when LIO cannot be read."""
        try:
            # Not under the lock: a bundle taken while a target is stuck half made is
            # the one that needs to show it, and must not wait for it.
            return dict(self._root().dump())
        except (ImportError, OSError) as exc:
            raise IscsihaError.single("lio-unreadable", "LIO", ISCSI_FABRIC_PATH,
                                      "the kernel's target in configfs", str(exc)) from exc
        except Exception as exc:  # rtslib's own RTSLibError: no configfs, module not loaded
            if type(exc).__name__ != "RTSLibError":
                raise
            raise IscsihaError.single("lio-unreadable", "LIO", ISCSI_FABRIC_PATH,
                                      "the kernel's target in configfs", str(exc)) from exc

    # -- changing ---------------------------------------------------------------------

    @contextmanager
    def _exclusive(self) -> Iterator[Any]:
        """rtslib, with this box's other LIO changes kept out, and its backstore index
        cache (if this rtslib has one) to be read again under the lock."""
        with exclusive(self._lock_path):
            lib = self._lib()
            cache = getattr(getattr(lib, "tcm", None), "bs_cache", None)
            if isinstance(cache, dict):
                cache.clear()
            yield lib

    def apply_target(self, spec: TargetParams, secrets: Secrets,
                     reservations: str | None = None) -> None:
        """Create or re-create the target with all its LUNs; the TPG is enabled last.
        ``reservations``: the folder of the LUNs' APTPL files (the mounted store), loaded
        before any LUN is exported and written there by LIO from then on."""
        with self._exclusive() as lib:
            self._remove_target(lib, spec.iqn, spec.luns)
            self._create_target(lib, spec, secrets, reservations)

    def _create_target(self, lib: Any, spec: TargetParams, secrets: Secrets,
                       reservations: str | None) -> None:
        stores = [self._backstore(lun, reservations) for lun in spec.luns]
        fabric = lib.FabricModule("iscsi")
        target = lib.Target(fabric, spec.iqn, mode="create")
        tpg = lib.TPG(target, TPG_TAG, mode="create")
        _set_tpg_policy(tpg, spec, secrets)
        luns = {lun.number: lib.LUN(tpg, lun.number, store)
                for lun, store in zip(spec.luns, stores, strict=True)}
        for initiator in spec.initiators:
            acl = lib.NodeACL(tpg, initiator, mode="create")
            _set_credentials(acl, spec.auth, secrets)
            for number, lun in luns.items():
                lib.MappedLUN(acl, number, lun)
        for portal in spec.portals:
            lib.NetworkPortal(tpg, str(portal.address), portal.port, mode="create")
        tpg.enable = True

    def remove_target(self, iqn: str, luns: Iterable[LunParam]) -> bool:
        """Remove the target, then its backstores, so nothing holds DRBD open."""
        with self._exclusive() as lib:
            return self._remove_target(lib, iqn, luns)

    def _remove_target(self, lib: Any, iqn: str, luns: Iterable[LunParam]) -> bool:
        removed = False
        root = lib.RTSRoot()
        for target in list(root.targets):
            if target.wwn == iqn:
                target.delete()  # TPGs, LUNs, ACLs and portals go with it
                removed = True
        luns = list(luns)
        names = {backstore_name(lun) for lun in luns}
        devices = {lun.device for lun in luns}
        for store in list(root.storage_objects):
            if store.name in names or store.udev_path in devices:
                store.delete()
                removed = True
        for lun in luns:
            # Never left for rtslib to load on its own when the store is created again:
            # the file is read back (and checked) by _backstore only.
            _unlink(_aptpl_link(lun))
        return removed

    def set_discovery_auth(self, auth: AuthParams, secrets: Secrets) -> None:
        fabric = self._lib().FabricModule("iscsi")
        if auth.mode is AuthMode.NONE:
            fabric.discovery_enable_auth = False
            return
        fabric.discovery_userid = auth.chap_user or ""
        fabric.discovery_password = secrets.chap or ""
        fabric.discovery_mutual_userid = auth.mutual_user or ""
        fabric.discovery_mutual_password = secrets.mutual or ""
        fabric.discovery_enable_auth = True

    def discovery_auth_enabled(self) -> bool:
        # Read only: do not create the fabric (and load its module) to answer.
        if not os.path.isdir(ISCSI_FABRIC_PATH):
            return False
        return bool(self._lib().FabricModule("iscsi").discovery_enable_auth)

    def _backstore(self, lun: LunParam, reservations: str | None) -> Any:
        lib = self._lib()
        link = _aptpl_link(lun)
        _unlink(link)  # rtslib would load a file found there itself, unchecked
        store = lib.BlockStorageObject(backstore_name(lun), dev=lun.device, wwn=lun.serial)
        # Product id, serial, attributes and reservations only before the device is exported.
        lib.utils.fwrite(f"{store.path}/wwn/product_id", lun.volume[:_PRODUCT_MAX] + "\n")
        for name, value in _attributes(store.path).items():
            lib.utils.fwrite(f"{store.path}/attrib/{name}", f"{value}\n")
        # LIO fails every PERSISTENT RESERVE OUT when it cannot open its APTPL file.
        os.makedirs(os.path.dirname(link), mode=0o700, exist_ok=True)
        if reservations is not None:
            kept = os.path.join(reservations, os.path.basename(link))
            for line in aptpl.registrations(files.read(kept) or b"", kept):
                lib.utils.fwrite(f"{store.path}/pr/res_aptpl_metadata", line)
            # Every LUN's reservations persist as if the initiator had asked (APTPL),
            # through the link into the replicated store.
            lib.utils.fwrite(f"{store.path}/attrib/force_pr_aptpl", "1\n")
            os.symlink(kept, link)
        return store


def _aptpl_link(lun: LunParam) -> str:
    dbroot = files.read_text(DBROOT_PATH).strip() if os.path.exists(DBROOT_PATH) else ""
    if not dbroot.startswith("/") or "\0" in dbroot:
        raise IscsihaError.single("lio-dbroot-unreadable", "LIO", DBROOT_PATH,
                                  "an absolute folder", repr(dbroot[:80]))
    return os.path.join(dbroot, "pr", f"aptpl_{lun.serial}")


def _unlink(path: str) -> None:
    with suppress(FileNotFoundError):
        os.unlink(path)


def _attributes(store_path: str) -> dict[str, int]:
    """Set explicitly rather than left to LIO's defaults: COMPARE AND WRITE (VMFS's
    locking), EXTENDED COPY, and UNMAP / WRITE SAME with UNMAP where the device under
    the LUN discards (LIO reports how much it can unmap at once, 0 when it cannot)."""
    unmap = files.read_text(f"{store_path}/attrib/max_unmap_lba_count").strip()
    discards = 1 if unmap.isdigit() and int(unmap) > 0 else 0
    return {"emulate_caw": 1, "emulate_3pc": 1, "emulate_tpu": discards,
            "emulate_tpws": discards}


def _target_state(root: Any, iqn: str) -> TargetState | None:
    target = next((t for t in root.targets if t.wwn == iqn), None)
    if target is None:
        return None
    tpg = next((t for t in target.tpgs if t.tag == TPG_TAG), None)
    if tpg is None:
        return TargetState(False, frozenset(), {}, frozenset())
    return TargetState(
        enabled=bool(tpg.enable),
        portals=frozenset((p.ip_address, int(p.port)) for p in tpg.network_portals),
        luns={int(lun.lun): lun.storage_object.udev_path for lun in tpg.luns},
        acls=frozenset(acl.node_wwn for acl in tpg.node_acls),
    )


def _set_tpg_policy(tpg: Any, spec: TargetParams, secrets: Secrets) -> None:
    chap = spec.auth.mode is not AuthMode.NONE
    tpg.set_attribute("authentication", "1" if chap else "0")
    # An initiator whose connection broke waits DefaultTime2Wait (the larger of both
    # sides' values; LIO's default is 2 s) before it reconnects: after a failover the
    # new box already serves when the old connection is reset, so it should not wait.
    tpg.set_parameter("DefaultTime2Wait", "0")
    if spec.allow_any_initiator:
        # Asked for explicitly: any initiator may log in, with the TPG's credentials.
        tpg.set_attribute("generate_node_acls", "1")
        tpg.set_attribute("cache_dynamic_acls", "1")
        tpg.set_attribute("demo_mode_write_protect", "0")
        _set_credentials(tpg, spec.auth, secrets)
    else:
        # Deny by default: only the listed initiators (node ACLs) get in.
        tpg.set_attribute("generate_node_acls", "0")
        tpg.set_attribute("demo_mode_write_protect", "1")


def _set_credentials(node: Any, auth: AuthParams, secrets: Secrets) -> None:
    if auth.mode is AuthMode.NONE:
        return
    node.chap_userid = auth.chap_user
    node.chap_password = secrets.chap
    if auth.mode is AuthMode.MUTUAL_CHAP:
        node.chap_mutual_userid = auth.mutual_user
        node.chap_mutual_password = secrets.mutual

