//! Shared rate-limiter and circuit-breaker state. Being built.
