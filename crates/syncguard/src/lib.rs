//! syncguard: a self-hosted integration sync engine in one binary.
//!
//! # Layout
//! Top-level modules in layers; each imports only from the layers below it (ARCHITECTURE.md
//! has the picture and the rules, and `tests/it/layers.rs` holds them):
//!
//! 1. [`cli`]: the `syncguard` command line, including `bench`.
//! 2. [`app`]: the composition root: builds the node, starts the runtime and the server.
//! 3. [`api`]: the HTTP API (`/v1`), its conventions (problem+json, request ids, idempotency
//!    keys, body limits, pagination), the server loop, probes, metrics and OpenAPI.
//! 4. [`services`]: webhook, sync, publish and health, sharing [`services::Services`].
//! 5. [`engine`] (the queue runtime: workers, completer, heartbeat, lease rescue, periodic
//!    schedules) and [`provider`] (definitions, the outbound HTTP client, rate limiter and
//!    breaker); neither imports the other.
//! 6. Foundation: [`env`] (the node's shared infrastructure), [`config`], [`egress`],
//!    [`secrets`], [`store_probe`], [`workers`], [`metrics`], [`logging`], [`clock`].
//!
//! Pure rules live in `syncguard_core`; all SQL lives in `syncguard_store`.

pub mod api;
pub mod app;
pub mod cli;
pub mod clock;
pub mod config;
pub mod egress;
pub mod engine;
pub mod env;
pub mod logging;
pub mod metrics;
pub mod provider;
pub mod secrets;
pub mod services;
pub mod store_probe;
pub mod workers;

pub use app::App;
