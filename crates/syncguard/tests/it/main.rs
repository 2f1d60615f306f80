//! syncguard's integration suite: real HTTP against a server on port 0, a fresh store per test,
//! and every store-facing test run on SQLite and on PostgreSQL.

mod helpers;

mod api;
mod api_audit;
mod api_conventions;
mod api_idempotency;
mod api_scope;
mod cli_admin;
mod config_cli;
mod engine;
mod fairness;
mod fencing;
mod health;
mod layers;
mod openapi;
mod outage;
mod process;
mod provider;
mod publish;
mod retention;
mod server;
mod sync;
mod webhook;
