//! Desired state, snapshots and drift events. Being built.
