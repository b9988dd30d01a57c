"""The plan: pure functions from desired state to cluster configuration and node files."""
