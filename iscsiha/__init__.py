"""iscsiha: a two-box HA iSCSI target appliance (DRBD, LIO, Pacemaker)."""

__version__ = "0.1.0"
