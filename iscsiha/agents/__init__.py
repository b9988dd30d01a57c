"""OCF resource agents: Pacemaker runs them on each box to start, stop and monitor."""
