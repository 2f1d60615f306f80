//! syncguard: a self-hosted integration sync engine in one binary.
//!
//! # Layout
//! - [`config`]: layered configuration (defaults → file → environment → flags), validated.
//! - [`app`]: shared state, start-up and the server loop.
//! - [`engine`]: workers, completer, heartbeat, lease rescue, periodic schedules, handlers.
//! - [`api`]: the HTTP API (`/v1`), its conventions (problem+json, request ids, idempotency
//!   keys, body limits, pagination), probes, metrics and the OpenAPI document.
//! - [`egress`]: the egress policy on real connections (checking resolver, URL checks, size-
//!   limited reads) for every outbound call a tenant can aim.
//! - [`server`]: the HTTP server loop and its limits (connections, header and body timeouts).
//! - [`secrets`]: the master key that seals credentials at rest.
//! - [`webhook`]: the inbound webhook gateway.
//! - [`provider`]: provider definitions, the outbound HTTP client, rate limiter and breaker.
//! - [`sync`]: backfill and incremental sync with checkpoints.
//! - [`health`]: the cached health snapshot and SLO status.
//! - [`publish`]: desired state, publishing, snapshots, reconciliation and drift.
//! - [`metrics`], [`logging`], [`clock`]: observability and time.
//! - [`store_probe`]: noticing store outages (and their end) without waiting on the pool.
//! - [`workers`]: the supervisor that starts and stops every background loop.
//! - [`cli`]: the `syncguard` command line, including `bench`.
//!
//! Pure rules live in `syncguard_core`; all SQL lives in `syncguard_store`.

pub mod api;
pub mod app;
pub mod cli;
pub mod clock;
pub mod config;
pub mod egress;
pub mod engine;
pub mod health;
pub mod logging;
pub mod metrics;
pub mod provider;
pub mod publish;
pub mod secrets;
pub mod server;
pub mod store_probe;
pub mod sync;
pub mod webhook;
pub mod workers;

pub use app::App;
