"""Which peer protocol this build speaks, and which older one it still serves.

During a rolling upgrade one box runs release N+1 and the other N for a while, and
apply, status and split-brain run steps on both. Every request names the protocol it
is written in (`iscsiha node STEP --protocol V`); a box serves OLDEST..CURRENT and
refuses any other with a report naming both. The calling box first asks the peer
(the `hello` step, whose request and reply never change) and writes in the older of
the two protocols.

A build that changes a step's request or reply raises CURRENT, keeps reading and
writing the previous protocol's form of that step, and sets OLDEST to CURRENT - 1:
then N and N+1 talk both ways, and N+2 refuses N (upgrade one release at a time).
A build may also add a step: it raises CURRENT and gives the step that protocol as
its ``since``; a box refuses a step newer than the protocol a request names, and a
caller refuses to ask a peer for one before sending anything.
tests/unit/test_peer_versions.py pins the messages of every protocol still served.

Protocol 2 adds the rolling upgrade's steps (upgrade-state, stage-root, reboot).
"""

from __future__ import annotations

from dataclasses import dataclass

from iscsiha.errors import IscsihaError

CURRENT = 2
OLDEST = 1
PROTOCOL_MAX = 999  # what a request may name at all; a larger number is garbage


@dataclass(frozen=True)
class Speaks:
    """The protocols one build serves, oldest to newest."""

    oldest: int = OLDEST
    newest: int = CURRENT

    @property
    def allowed(self) -> str:
        if self.oldest == self.newest:
            return f"protocol {self.newest}"
        return f"protocol {self.oldest} to {self.newest}"

    def check(self, protocol: int, where: str) -> None:
        """Refuse a request written in a protocol this build does not serve."""
        if not self.oldest <= protocol <= self.newest:
            raise IscsihaError.single(
                "peer-protocol", where, str(protocol), self.allowed,
                "the other box runs a release this one cannot talk to: upgrade one "
                "release at a time")

    def common(self, peer: Speaks, peer_name: str, peer_release: str) -> int:
        """The protocol to write to a peer that serves ``peer``: the older newest one."""
        protocol = min(self.newest, peer.newest)
        if protocol < max(self.oldest, peer.oldest):
            raise IscsihaError.single(
                "peer-protocol", f"node {peer_name} (iscsiha {peer_release})",
                peer.allowed, f"a release that shares a protocol with this box's "
                f"{self.allowed}", "upgrade one release at a time")
        return protocol

    def step(self, name: str, since: int, protocol: int, where: str) -> None:
        """Refuse a step that ``protocol`` does not have (added in protocol ``since``)."""
        if protocol < since:
            raise IscsihaError.single(
                "peer-step-unknown", where, name, f"a step of protocol {protocol} or older",
                f"{name} came with protocol {since}: the box speaking {protocol} runs an "
                "older release (upgrade that box by hand: iscsiha upgrade stage, reboot)")


THIS_BUILD = Speaks()
