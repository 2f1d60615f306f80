//! Inbound webhook events. Being built.
