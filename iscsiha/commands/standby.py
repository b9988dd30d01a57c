"""A box in standby for maintenance: its targets move to the other box (each with the
pause of a planned move) and stay there until it is back; then they fail back as their
policy says."""

from __future__ import annotations

from iscsiha.commands.cluster_env import ClusterEnv
from iscsiha.commands.targets import Progress, TargetStatus, status
from iscsiha.errors import IscsihaError
from iscsiha.model.names import check_timeout


def standby(env: ClusterEnv, node: str, on: bool, timeout: float,
            progress: Progress) -> tuple[TargetStatus, ...]:
    """Put ``node`` in standby (``on``) or bring it back; the targets once settled."""
    check_timeout(timeout)
    pacemaker = env.pacemaker
    state = status(pacemaker)
    online = dict(state.nodes)
    if node not in online:
        raise IscsihaError.single("unknown-node", "node", node, ", ".join(online))
    if on == (node in state.standby):
        progress(f"{node} is already {'in standby' if on else 'back (not in standby)'}")
        return state.targets
    if on and not any(up and n != node and n not in state.standby for n, up in state.nodes):
        raise IscsihaError.single(
            "standby-last-box", "node", node, "a node whose peer is online and not in "
            "standby", "no other box would serve its targets: every target would stop")
    leaving = [t.name for t in state.targets if node in t.running_on]
    if on:
        progress(f"{node}: standby on; " + (f"moving {', '.join(leaving)} to the other box"
                                            if leaving else "it serves no target"))
    else:
        progress(f"{node}: standby off; targets with failback = auto return to it")
    pacemaker.standby(node, on)
    pacemaker.wait(timeout)
    now = status(pacemaker).targets
    if on:
        stuck = [t.name for t in now if node in t.running_on or not t.healthy]
        if stuck:
            raise IscsihaError.single(
                "standby-incomplete", "node", node, "every target served by the other box",
                f"not yet: {', '.join(stuck)}")
    return now
