//! Integration tests: real HTTP against mocks spawned on port 0, one fresh mock per test.

mod control;
mod ebay;
mod faults;
mod helpers;
mod modules;
mod ratelimit;
mod webhooks;
mod wms;
