//! Where the services meet the runtime's outcomes: a provider failure is already sorted into the
//! queue's classes (SPEC §3.1), so a job handler hands it on as it is (`Err(e)?`).

use crate::engine::handler::JobError;
use crate::provider::ProviderError;

impl From<ProviderError> for JobError {
    fn from(e: ProviderError) -> JobError {
        JobError {
            class: e.class,
            message: e.message,
            retry_after_ms: e.retry_after_ms,
            snooze_ms: None,
        }
    }
}
