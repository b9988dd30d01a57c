"""The desired state of a two-box cluster, its validation and its identities (pure)."""
