//! Sync checkpoints. Being built.
