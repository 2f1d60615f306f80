//! The pure core of syncguard.
//!
//! Everything here is plain functions and types: no I/O, no clock reads (time is always a
//! parameter), no global state. That is what lets the storage, engine and HTTP layers be thin,
//! and what lets the reliability rules be unit- and property-tested in isolation.
//!
//! # Layout
//! - [`backoff`]: the retry-delay formula of the job queue (SPEC §3.1).
//! - [`class`]: error classes (transient, rate_limited, permanent, circuit_open) and how HTTP
//!   outcomes map to them.
//! - [`connection`]: a connection's status.
//! - [`egress`]: the egress policy (which addresses outbound calls may reach) and safe URL
//!   path segments.
//! - [`redact`]: PII and secret redaction applied to every log line.
//! - [`role`]: API key roles and what each may do.
//! - [`ids`]: prefixed identifiers and API key material.
//! - [`signature`]: inbound webhook signature schemes (Standard Webhooks, Stripe, Shopify, GitHub,
//!   generic HMAC).
//! - [`canonical`]: RFC 8785 canonical JSON and content hashes.
//! - [`breaker`]: circuit breaker state machine.
//! - [`limiter`]: GCRA rate-limit math and provider hint parsing.
//! - [`seal`]: AEAD sealing of secrets at rest, with key ids for rotation.
//! - [`time`]: RFC 3339 and HTTP dates to and from Unix milliseconds.
//!
//! This crate must not touch the network, the file system, the store or the wall clock.

pub mod backoff;
pub mod breaker;
pub mod canonical;
pub mod class;
pub mod connection;
pub mod egress;
pub mod ids;
pub mod limiter;
pub mod redact;
pub mod role;
pub mod seal;
pub mod signature;
pub mod time;

/// Milliseconds since the Unix epoch: the one time unit stored and passed around.
pub type Millis = i64;
