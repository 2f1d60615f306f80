//! Job handlers: what each job kind does. A handler is idempotent (the queue runs jobs at least
//! once) and reports failures with an [`ErrorClass`] so the queue knows whether to retry.
//!
//! The runtime does not know what the handlers work with: [`Handlers<S>`] registers handlers of
//! a state `S` chosen by whoever composes the node, and [`Handlers::bind`] gives them that state
//! once it exists. The runtime itself only ever sees [`Bound`] handlers.

use crate::env::Env;
use futures::future::BoxFuture;
use serde::Deserialize;
use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;
use syncguard_core::class::ErrorClass;
use syncguard_store::queue::Job;
use syncguard_store::{Store, StoreError};

/// Why a job run failed, and what the failure tells the queue.
#[derive(Debug, Clone, PartialEq)]
pub struct JobError {
    pub class: ErrorClass,
    pub message: String,
    /// The provider's hint (`Retry-After`), which wins over backoff when larger.
    pub retry_after_ms: Option<u64>,
    /// Not a failure: run again this much later without spending the attempt (SPEC §3.1
    /// "Snooze"). The class and message only explain the wait in logs.
    pub snooze_ms: Option<u64>,
}

impl JobError {
    pub fn new(class: ErrorClass, message: impl Into<String>) -> JobError {
        JobError {
            class,
            message: message.into(),
            retry_after_ms: None,
            snooze_ms: None,
        }
    }
    /// Reschedules the job `wait_ms` from now without spending an attempt.
    pub fn snooze(wait_ms: u64, why: impl Into<String>) -> JobError {
        JobError {
            snooze_ms: Some(wait_ms),
            ..JobError::new(ErrorClass::Transient, why)
        }
    }
    pub fn transient(message: impl Into<String>) -> JobError {
        JobError::new(ErrorClass::Transient, message)
    }
    pub fn permanent(message: impl Into<String>) -> JobError {
        JobError::new(ErrorClass::Permanent, message)
    }
}

/// How long a job whose store call found the store unreachable waits before it runs again:
/// a second or two, jittered so a node's snoozed jobs do not all come back at once.
const STORE_UNAVAILABLE_SNOOZE_MS: std::ops::Range<u64> = 1_000..3_000;

/// A store failure inside a handler. An unreachable store (down, or its pool exhausted) says
/// nothing about the job, so the job snoozes and keeps its attempts: a long outage or an
/// overloaded pool must not dead-letter work that was never wrong. Anything else is an
/// ordinary transient failure.
impl From<StoreError> for JobError {
    fn from(e: StoreError) -> JobError {
        match e {
            StoreError::Unavailable(_) => JobError::snooze(
                rand::Rng::gen_range(&mut rand::thread_rng(), STORE_UNAVAILABLE_SNOOZE_MS),
                format!("store: {e}"),
            ),
            e => JobError::transient(format!("store: {e}")),
        }
    }
}

/// What a handler gets: the job, the state its handlers were registered with, and the store to
/// write through.
pub struct JobContext<S> {
    pub job: Job,
    /// The node's infrastructure (its store unfenced, clock, outbound HTTP).
    pub env: Env,
    /// The state given to [`Handlers::bind`]; the runtime does not know its type.
    pub app: S,
    /// The node's store fenced by this run's lease token: every write a handler makes for its
    /// job goes through it, so once the lease is lost the run's writes are refused
    /// (`StoreError::Fenced`) instead of racing the job's next run.
    pub store: Store,
}

impl<S> JobContext<S> {
    /// A context for `job`, fenced by its claim's token when it has one.
    pub fn new(job: Job, env: &Env, app: S) -> JobContext<S> {
        let store = match job.fence() {
            Some(f) => env.store.fenced(f),
            None => env.store.clone(),
        };
        JobContext {
            job,
            env: env.clone(),
            app,
            store,
        }
    }
}

pub trait JobHandler<S>: Send + Sync + 'static {
    fn run(&self, ctx: JobContext<S>) -> BoxFuture<'static, Result<(), JobError>>;
}

impl<S, F, Fut> JobHandler<S> for F
where
    F: Fn(JobContext<S>) -> Fut + Send + Sync + 'static,
    Fut: std::future::Future<Output = Result<(), JobError>> + Send + 'static,
{
    fn run(&self, ctx: JobContext<S>) -> BoxFuture<'static, Result<(), JobError>> {
        Box::pin(self(ctx))
    }
}

/// Handlers by job kind, for a state `S`.
pub struct Handlers<S>(HashMap<String, Arc<dyn JobHandler<S>>>);

impl<S> Clone for Handlers<S> {
    fn clone(&self) -> Self {
        Handlers(self.0.clone())
    }
}

impl<S> Default for Handlers<S> {
    fn default() -> Self {
        Handlers(HashMap::new())
    }
}

impl<S: Clone + Send + Sync + 'static> Handlers<S> {
    pub fn register(&mut self, kind: &str, handler: impl JobHandler<S>) {
        self.0.insert(kind.to_string(), Arc::new(handler));
    }

    /// The runtime's own handler (`noop`), which needs no state.
    pub fn runtime() -> Handlers<S> {
        let mut h = Handlers::default();
        h.register(NOOP, noop);
        h
    }

    /// Gives every handler its state: what the runtime runs.
    pub fn bind(self, app: S) -> Bound {
        let by_kind = self
            .0
            .into_iter()
            .map(|(kind, handler)| {
                let run: Arc<dyn Runnable> = Arc::new(WithState {
                    handler,
                    app: app.clone(),
                });
                (kind, run)
            })
            .collect();
        Bound(by_kind)
    }
}

/// A handler with its state: started with the job and the node's infrastructure.
pub trait Runnable: Send + Sync + 'static {
    fn run(&self, job: Job, env: &Env) -> BoxFuture<'static, Result<(), JobError>>;
}

struct WithState<S> {
    handler: Arc<dyn JobHandler<S>>,
    app: S,
}

impl<S: Clone + Send + Sync + 'static> Runnable for WithState<S> {
    fn run(&self, job: Job, env: &Env) -> BoxFuture<'static, Result<(), JobError>> {
        self.handler
            .run(JobContext::new(job, env, self.app.clone()))
    }
}

/// Handlers by job kind, bound to their state.
#[derive(Clone, Default)]
pub struct Bound(HashMap<String, Arc<dyn Runnable>>);

impl Bound {
    pub fn get(&self, kind: &str) -> Option<Arc<dyn Runnable>> {
        self.0.get(kind).cloned()
    }

    pub fn kinds(&self) -> Vec<String> {
        let mut k: Vec<String> = self.0.keys().cloned().collect();
        k.sort();
        k
    }
}

/// Does nothing, optionally slowly, optionally failing, optionally touching a URL once it is
/// done: the job the benchmarks and the crash tests drive the queue with.
pub const NOOP: &str = "noop";

#[derive(Debug, Default, Deserialize)]
#[serde(default)]
struct NoopPayload {
    sleep_ms: u64,
    /// Fail every run with this class (tests of retry and dead-lettering).
    fail: Option<ErrorClass>,
    /// POST `{"job_id"}` here when done: an external effect tests can count.
    touch_url: Option<String>,
}

async fn noop<S>(ctx: JobContext<S>) -> Result<(), JobError> {
    let p: NoopPayload = serde_json::from_value(ctx.job.payload.clone())
        .map_err(|e| JobError::permanent(format!("invalid noop payload: {e}")))?;
    if p.sleep_ms > 0 {
        tokio::time::sleep(Duration::from_millis(p.sleep_ms)).await;
    }
    if let Some(class) = p.fail {
        return Err(JobError::new(class, "failing as asked"));
    }
    if let Some(url) = p.touch_url {
        let resp = ctx
            .env
            .http
            .post(&url)
            .json(&serde_json::json!({ "job_id": ctx.job.id }))
            .send()
            .await
            .map_err(|e| JobError::transient(format!("touch failed: {e}")))?;
        if let Some(class) = ErrorClass::from_status(resp.status().as_u16()) {
            return Err(JobError::new(
                class,
                format!("touch answered {}", resp.status()),
            ));
        }
    }
    Ok(())
}
