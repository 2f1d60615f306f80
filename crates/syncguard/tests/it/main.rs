//! syncguard's integration suite: real HTTP against a server on port 0, a fresh store per test,
//! and every store-facing test run on SQLite and on PostgreSQL.

mod helpers;

mod api;
mod engine;
mod health;
mod process;
mod provider;
mod publish;
mod server;
mod sync;
mod webhook;
