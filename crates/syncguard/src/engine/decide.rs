//! What the queue does with a failed run (SPEC §3.1): retry after the backoff formula (or the
//! provider's hint), dead-letter, or reschedule without spending the attempt. Pure: time and
//! randomness come in as parameters.

use super::handler::JobError;
use rand::Rng;
use syncguard_core::backoff::RetryPolicy;
use syncguard_core::class::ErrorClass;
use syncguard_core::Millis;
use syncguard_store::queue::{Job, Outcome};

/// How long a job that met an open circuit waits when the breaker gave no time.
pub const CIRCUIT_OPEN_DEFAULT_WAIT_MS: u64 = 60_000;

pub fn after_failure<R: Rng + ?Sized>(
    job: &Job,
    err: &JobError,
    policy: &RetryPolicy,
    permanent_max_attempts: i64,
    now: Millis,
    rng: &mut R,
) -> Outcome {
    let attempt = job.attempts.max(1);
    if let Some(wait) = err.snooze_ms {
        return Outcome::Snooze {
            run_at: now + wait as Millis,
        };
    }
    match err.class {
        ErrorClass::CircuitOpen => Outcome::Retry {
            run_at: now + err.retry_after_ms.unwrap_or(CIRCUIT_OPEN_DEFAULT_WAIT_MS) as Millis,
            class: err.class,
            error: err.message.clone(),
            count_attempt: false,
        },
        ErrorClass::Permanent if attempt >= permanent_max_attempts.min(job.max_attempts) => {
            Outcome::Dead {
                class: err.class,
                error: err.message.clone(),
            }
        }
        _ if attempt >= job.max_attempts => Outcome::Dead {
            class: err.class,
            error: err.message.clone(),
        },
        _ => Outcome::Retry {
            run_at: now + policy.delay_ms(attempt as u32, err.retry_after_ms, rng) as Millis,
            class: err.class,
            error: err.message.clone(),
            count_attempt: true,
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::rngs::StdRng;
    use rand::SeedableRng;
    use syncguard_store::queue::JobState;

    fn job(attempts: i64, max: i64) -> Job {
        Job {
            id: 1,
            tenant_id: None,
            connection_id: None,
            kind: "k".into(),
            payload: serde_json::json!({}),
            state: JobState::Running,
            priority: 0,
            attempts,
            max_attempts: max,
            run_at: 0,
            created_at: 0,
            updated_at: 0,
            started_at: None,
            finished_at: None,
            locked_by: None,
            lease_until: None,
            unique_key: None,
            error_class: None,
            last_error: None,
            reviewed: false,
            replayed_from: None,
            replayed_as: None,
            correlation_id: None,
            lease_id: None,
        }
    }

    const NOW: Millis = 1_000_000;

    #[test]
    fn transient_retries_within_formula_bounds_then_dies() {
        let p = RetryPolicy::default();
        let mut rng = StdRng::seed_from_u64(1);
        for attempt in 1..6 {
            match after_failure(
                &job(attempt, 6),
                &JobError::transient("503"),
                &p,
                1,
                NOW,
                &mut rng,
            ) {
                Outcome::Retry {
                    run_at,
                    count_attempt: true,
                    ..
                } => {
                    let (lo, hi) = p.bounds_ms(attempt as u32);
                    assert!(
                        run_at >= NOW + lo as i64 && run_at <= NOW + hi as i64,
                        "attempt {attempt}: {run_at}"
                    );
                }
                other => panic!("{other:?}"),
            }
        }
        assert!(matches!(
            after_failure(
                &job(6, 6),
                &JobError::transient("503"),
                &p,
                1,
                NOW,
                &mut rng
            ),
            Outcome::Dead { .. }
        ));
    }

    #[test]
    fn snooze_reschedules_without_failing_even_on_the_last_attempt() {
        let out = after_failure(
            &job(6, 6),
            &JobError::snooze(30_000, "yielding"),
            &RetryPolicy::default(),
            1,
            NOW,
            &mut StdRng::seed_from_u64(4),
        );
        assert_eq!(
            out,
            Outcome::Snooze {
                run_at: NOW + 30_000
            }
        );
    }

    #[test]
    fn provider_hint_wins_when_larger() {
        let mut err = JobError::new(ErrorClass::RateLimited, "429");
        err.retry_after_ms = Some(90_000);
        let out = after_failure(
            &job(1, 6),
            &err,
            &RetryPolicy::default(),
            1,
            NOW,
            &mut StdRng::seed_from_u64(2),
        );
        assert!(matches!(out, Outcome::Retry { run_at, .. } if run_at == NOW + 90_000));
    }

    #[test]
    fn permanent_dead_letters_at_once_and_circuit_open_keeps_the_attempt() {
        let mut rng = StdRng::seed_from_u64(3);
        let p = RetryPolicy::default();
        assert!(matches!(
            after_failure(
                &job(1, 6),
                &JobError::permanent("422"),
                &p,
                1,
                NOW,
                &mut rng
            ),
            Outcome::Dead {
                class: ErrorClass::Permanent,
                ..
            }
        ));
        assert!(matches!(
            after_failure(
                &job(1, 6),
                &JobError::permanent("422"),
                &p,
                2,
                NOW,
                &mut rng
            ),
            Outcome::Retry { .. }
        ));
        let open = JobError::new(ErrorClass::CircuitOpen, "open");
        assert!(matches!(
            after_failure(&job(6, 6), &open, &p, 1, NOW, &mut rng),
            Outcome::Retry {
                count_attempt: false,
                ..
            }
        ));
    }
}
