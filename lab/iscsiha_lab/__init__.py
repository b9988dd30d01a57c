"""The lab: two appliance nodes, an initiator, a tiebreaker and two BMCs on one machine.

Every node is a user-mode Linux (UML) kernel running the real stack (LIO, DRBD,
corosync, pacemaker, open-iscsi); the networks are bridges inside a network
namespace that only the lab's processes live in. See ``iscsiha-lab --help``.
"""
