//! The mock provider (SPEC §5): a deterministic, in-memory stand-in for real providers, served
//! over real HTTP so the engine, the demo and the benchmarks exercise their genuine client code.
//! It is never used by production code paths.
//!
//! It owns its own data, clock reads and background tasks; it must not touch the syncguard store
//! or any other crate's state. The only syncguard code it calls is
//! [`syncguard_core::signature::sign_standard`], to sign the webhooks it emits.
//!
//! # Routes
//!
//! Provider API (counted in stats, subject to faults):
//!
//! | route | shape |
//! |---|---|
//! | `GET /wms/{orders,products,inventory,inbound-shipments}` | Trackstar-shaped list: `updated_date[gte]`, `limit` (default and max 1000), `page_token` → `{"data": […], "next_token": "…" \| null}`. Any other `/wms/{resource}` → 501. Auth: non-empty `x-trackstar-api-key` and `x-trackstar-access-token`, else 401. |
//! | `POST /link/token` | `{"link_token"}` (needs `x-trackstar-api-key`) |
//! | `POST /link/exchange` | `{"auth_code": "code_…"}` → `{"access_token", "connection_id", "integration_name"}`; other codes → 400 |
//! | `POST /identity/v1/oauth2/token` | eBay OAuth2: form `grant_type=client_credentials\|refresh_token`, HTTP Basic client id/secret → `{"access_token", "expires_in", "token_type"}` |
//! | `PUT/GET/DELETE /sell/inventory/v1/inventory_item/{sku}` | eBay Sell Inventory item (Bearer auth); PUT 201 create / 204 update; eBay-style error bodies |
//! | `GET /sell/inventory/v1/inventory_item?limit=&offset=` | `{"href", "inventoryItems", "total", "size", "limit", "offset", "next"?, "prev"?}` |
//!
//! Control plane (never counted, never faulted):
//!
//! | route | purpose |
//! |---|---|
//! | `GET /_mock/stats` | [`Stats`] |
//! | `GET /_mock/records/{resource}` | `{"data": […]}`: every live object as the API returns it (`orders`, `products`, `inventory`, `inbound-shipments`, `inventory_item`) |
//! | `GET/POST/DELETE /_mock/faults` | read, change ([`FaultsPatch`]) or reset fault injection |
//! | `POST/DELETE /_mock/webhooks` | configure and start, or stop, the webhook emitter ([`WebhookConfig`] plus `count`, `events`) |
//! | `POST /_mock/mutate` | `{"count": n}` applies n mutations now; `{"rate_per_s": r}` runs the mutation driver (0 stops) |
//! | `POST /_mock/tokens/expire` | expire every eBay access token, so the next call answers 401 |
//!
//! # Semantics worth knowing
//!
//! - **Pagination is exactly-once.** WMS lists are ordered by `(updated_date, id)`; a change
//!   bumps `updated_date`, which moves the item to the end of that order. The page token names
//!   its listing, and the mock remembers (for 15 idle minutes) which items moved after that
//!   listing had returned them: those are not returned again, while an item that moves before the
//!   listing reaches it is returned once, at the end. Retrying a page token is safe. Either way a
//!   client that keeps an `updated_date` cursor sees every later change on its next incremental
//!   sync. A token of a forgotten listing still works, as plain keyset pagination.
//! - **Deletes** remove the object: it disappears from lists and from `/_mock/records`, and a
//!   `*.deleted` webhook carrying the last state is emitted. There are no tombstones.
//! - **Rate limit** is a GCRA bucket per access token (Trackstar access token or eBay bearer).
//!   Calls beyond it answer 429 and count as `rate_limit_violations`; 429s injected by a fault
//!   storm count as `faults_injected` instead, since the client did nothing wrong.
//! - **Determinism**: seeded data and the mutation sequence depend only on `seed`; timestamps
//!   are relative to the mock's start. Webhook message ids and tokens are random so that two runs
//!   never collide in a persistent engine database.
//!
//! # Layout
//! - `config`: [`MockConfig`].
//! - `state`: [`MockState`], the shared handle to everything below (also the in-process test API).
//! - `store`, `seed`, `mutation`: WMS records, their generator, and the mutation driver.
//! - `wms`, `ebay`: the two provider APIs.
//! - `limiter`, `faults`, `stats`: per-token GCRA, fault injection, counters.
//! - `webhook`: the signed webhook emitter.
//! - `tasks`: the background mutation driver and webhook dispatcher.
//! - `middleware`: fault injection and the rate limit, shared by both provider APIs.
//! - `control`, `routes`: `/_mock/*` handlers and the router assembly.

#![forbid(unsafe_code)]

mod clock;
pub mod config;
mod control;
mod ebay;
mod faults;
mod http;
mod limiter;
mod middleware;
mod mutation;
mod routes;
mod seed;
pub mod state;
mod stats;
mod store;
mod tasks;
mod webhook;
mod wms;

use std::future::Future;
use std::net::SocketAddr;

use tokio::sync::oneshot;
use tokio::task::JoinHandle;

pub use clock::{format_rfc3339_ms, parse_rfc3339};
pub use config::MockConfig;
pub use faults::{FaultsPatch, FaultsView};
pub use mutation::{Mutation, MutationKind};
pub use state::MockState;
pub use stats::Stats;
pub use store::Resource;
pub use webhook::WebhookConfig;

/// A mock server running in the background, as returned by [`spawn`].
///
/// Dropping the handle stops the server too (the shutdown channel closes), so a test that
/// forgets [`MockHandle::shutdown`] does not leak a listener.
pub struct MockHandle {
    /// The bound address (always `127.0.0.1` with an ephemeral port).
    pub addr: SocketAddr,
    /// `http://{addr}`, ready to join paths onto.
    pub base_url: String,
    state: MockState,
    stop: oneshot::Sender<()>,
    task: JoinHandle<anyhow::Result<()>>,
}

impl MockHandle {
    /// A snapshot of the counters, the same as `GET /_mock/stats`.
    pub fn stats(&self) -> Stats {
        self.state.stats()
    }

    /// A cheap clone of the shared state, for tests that inject faults or mutate in-process.
    pub fn state(&self) -> MockState {
        self.state.clone()
    }

    /// Stops accepting connections, ends held (timeout-fault) requests and background tasks, and
    /// waits for in-flight requests to finish.
    pub async fn shutdown(self) {
        let _ = self.stop.send(());
        match self.task.await {
            Ok(Ok(())) => {}
            Ok(Err(err)) => tracing::warn!(error = %err, "mock server stopped with an error"),
            Err(err) => tracing::warn!(error = %err, "mock server task failed"),
        }
    }
}

/// Binds `127.0.0.1:0` and serves the mock in a background task.
pub async fn spawn(cfg: MockConfig) -> anyhow::Result<MockHandle> {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let addr = listener.local_addr()?;
    let state = MockState::new(cfg);
    let (stop, stopped) = oneshot::channel::<()>();
    let task = tokio::spawn(serve_with_state(listener, state.clone(), async move {
        // Resolves on an explicit shutdown and when the handle is dropped.
        let _ = stopped.await;
    }));
    Ok(MockHandle {
        addr,
        base_url: format!("http://{addr}"),
        state,
        stop,
        task,
    })
}

/// Serves the mock on `listener` until `shutdown` resolves.
pub async fn serve(
    listener: tokio::net::TcpListener,
    cfg: MockConfig,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> anyhow::Result<()> {
    serve_with_state(listener, MockState::new(cfg), shutdown).await
}

/// Like [`serve`], with a state the caller built (and keeps a clone of, e.g. to print the final
/// stats).
pub async fn serve_with_state(
    listener: tokio::net::TcpListener,
    state: MockState,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> anyhow::Result<()> {
    let addr = listener.local_addr()?;
    state.set_base_url(format!("http://{addr}"));
    let driver = tokio::spawn(tasks::run_mutation_driver(state.clone()));
    let emitter = tokio::spawn(tasks::run_webhook_dispatcher(state.clone()));

    let app = routes::router(state.clone());
    let on_shutdown = state.clone();
    let served = axum::serve(listener, app)
        .with_graceful_shutdown(async move {
            shutdown.await;
            // Wake requests held by latency/timeout faults, or graceful shutdown would wait
            // for them for up to 30 s.
            on_shutdown.signal_stop();
        })
        .await;
    state.signal_stop();
    let _ = driver.await;
    let _ = emitter.await;
    served.map_err(Into::into)
}
