//! The background tasks a served mock runs beside its routes: the mutation driver and the
//! webhook dispatcher. Both stop when the server stops ([`MockState::stopped`]).

use std::time::Duration;

use rand::rngs::StdRng;
use rand::SeedableRng;
use syncguard_core::signature::sign_standard;
use tokio::sync::watch;
use tokio::time::{Instant, MissedTickBehavior};

use crate::clock::now_ms;
use crate::state::MockState;
use crate::stats::bump;
use crate::webhook::{arrange, Outgoing};

/// How often the driver wakes; mutations due in between are applied together.
const DRIVER_TICK: Duration = Duration::from_millis(20);

/// Applies random mutations at the rate last set through [`MockState::set_mutation_rate`],
/// until the server stops.
pub(crate) async fn run_mutation_driver(state: MockState) {
    let mut rate_rx = state.mutation_rate();
    loop {
        let rate = *rate_rx.borrow_and_update();
        if rate > 0.0 {
            drive_at(&state, rate, &mut rate_rx).await;
        } else {
            tokio::select! {
                changed = rate_rx.changed() => if changed.is_err() { return },
                () = state.stopped() => return,
            }
        }
        if state.is_stopped() {
            return;
        }
    }
}

/// Mutates at `rate` per second until the rate changes or the server stops.
async fn drive_at(state: &MockState, rate: f64, rate_rx: &mut watch::Receiver<f64>) {
    let mut tick = tokio::time::interval(DRIVER_TICK);
    tick.set_missed_tick_behavior(MissedTickBehavior::Delay);
    let mut credit = 0.0;
    let mut last = Instant::now();
    loop {
        tokio::select! {
            _ = tick.tick() => {
                let now = Instant::now();
                // Never more than a second's worth at once, so a stalled runtime does not
                // come back with a burst.
                credit = (credit + rate * (now - last).as_secs_f64()).min(rate.max(1.0));
                last = now;
                let due = credit.floor();
                credit -= due;
                if due >= 1.0 {
                    state.mutate(due as usize);
                }
            }
            _ = rate_rx.changed() => return,
            () = state.stopped() => return,
        }
    }
}

/// Drains the queue until the server stops.
pub(crate) async fn run_webhook_dispatcher(state: MockState) {
    let Some(mut rx) = state.emitter().take_receiver() else {
        return;
    };
    let cfg = state.config().clone();
    let client = match reqwest::Client::builder()
        .timeout(Duration::from_millis(cfg.webhook_timeout_ms))
        .user_agent("syncguard-mock")
        .build()
    {
        Ok(client) => client,
        Err(err) => {
            tracing::error!(error = %err, "webhook client unavailable; webhooks disabled");
            return;
        }
    };
    let mut rng = StdRng::from_entropy();
    loop {
        let first = tokio::select! {
            msg = rx.recv() => match msg { Some(m) => m, None => return },
            () = state.stopped() => return,
        };
        let mut batch = vec![first];
        while batch.len() < cfg.webhook_reorder_batch.max(1) {
            match rx.try_recv() {
                Ok(msg) => batch.push(msg),
                Err(_) => break,
            }
        }
        for msg in arrange(batch, &mut rng) {
            let delivered = tokio::select! {
                ok = attempt(&state, &client, &msg) => ok,
                () = state.stopped() => return,
            };
            if !delivered {
                tokio::spawn(retry(state.clone(), client.clone(), msg));
            }
        }
    }
}

/// Retries a failed delivery with backoff `base · 4^(n-1)` until it succeeds, attempts run
/// out, or the server stops.
async fn retry(state: MockState, client: reqwest::Client, msg: Outgoing) {
    let cfg = state.config();
    let mut delay = Duration::from_millis(cfg.webhook_retry_base_ms);
    for _ in 1..cfg.webhook_max_attempts {
        if !state.sleep(delay).await {
            return;
        }
        let delivered = tokio::select! {
            ok = attempt(&state, &client, &msg) => ok,
            () = state.stopped() => return,
        };
        if delivered {
            return;
        }
        delay *= 4;
    }
    bump(&state.counters().webhooks_failed);
    tracing::warn!(msg_id = %msg.msg_id, "webhook abandoned after the last attempt");
}

/// One signed POST; true on a 2xx.
async fn attempt(state: &MockState, client: &reqwest::Client, msg: &Outgoing) -> bool {
    let timestamp = now_ms() / 1000;
    let signature = sign_standard(&msg.cfg.secret, &msg.msg_id, timestamp, &msg.body);
    let timestamp = timestamp.to_string();
    bump(&state.counters().webhook_attempts);
    let sent = client
        .post(&msg.cfg.target_url)
        .header("content-type", "application/json")
        .header("svix-id", &msg.msg_id)
        .header("svix-timestamp", &timestamp)
        .header("svix-signature", &signature)
        .header("webhook-id", &msg.msg_id)
        .header("webhook-timestamp", &timestamp)
        .header("webhook-signature", &signature)
        .body(msg.body.clone())
        .send()
        .await;
    match sent {
        Ok(resp) if resp.status().is_success() => {
            bump(&state.counters().webhooks_sent);
            true
        }
        Ok(resp) => {
            tracing::debug!(msg_id = %msg.msg_id, status = resp.status().as_u16(), "webhook refused");
            false
        }
        Err(err) => {
            tracing::debug!(msg_id = %msg.msg_id, error = %err, "webhook delivery failed");
            false
        }
    }
}
