//! Logs: JSON lines by default (`--log-format pretty` for people), and every line passes
//! through [`syncguard_core::redact::redact_line`] on its way out, so no email, phone number,
//! token or secret reaches a log whatever a call site writes.
//!
//! Panics go the same way: [`init`] replaces the default panic hook (which prints the message
//! to stderr as is — a panic on a provider body would print the body) with [`log_panic`], one
//! redacted log line with the message, location and, when `RUST_BACKTRACE` asks, the backtrace.

use crate::config::LogFormat;
use std::io::{self, Write};
use std::sync::{Arc, Mutex};
use tracing_subscriber::fmt::MakeWriter;
use tracing_subscriber::EnvFilter;

/// Wraps a writer so that each formatted event is redacted before it is written.
#[derive(Clone)]
pub struct RedactingMakeWriter<M> {
    inner: M,
}

impl<M> RedactingMakeWriter<M> {
    pub fn new(inner: M) -> Self {
        RedactingMakeWriter { inner }
    }
}

pub struct RedactingWriter<W: Write> {
    inner: W,
    buf: Vec<u8>,
}

impl<W: Write> Write for RedactingWriter<W> {
    fn write(&mut self, data: &[u8]) -> io::Result<usize> {
        self.buf.extend_from_slice(data);
        Ok(data.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        if self.buf.is_empty() {
            return self.inner.flush();
        }
        let text = String::from_utf8_lossy(&self.buf);
        let clean = syncguard_core::redact::redact_line(&text);
        self.inner.write_all(clean.as_bytes())?;
        self.buf.clear();
        self.inner.flush()
    }
}

impl<W: Write> Drop for RedactingWriter<W> {
    fn drop(&mut self) {
        let _ = self.flush();
    }
}

impl<'a, M: MakeWriter<'a>> MakeWriter<'a> for RedactingMakeWriter<M> {
    type Writer = RedactingWriter<M::Writer>;
    fn make_writer(&'a self) -> Self::Writer {
        RedactingWriter {
            inner: self.inner.make_writer(),
            buf: Vec::new(),
        }
    }
}

/// Installs the global subscriber writing to stdout. `RUST_LOG` overrides the default level.
pub fn init(format: LogFormat) {
    let filter = EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| EnvFilter::new("info,sqlx=warn,tower_http=warn"));
    let writer = RedactingMakeWriter::new(io::stdout);
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(writer);
    let _ = match format {
        LogFormat::Json => builder
            .json()
            .flatten_event(true)
            .with_current_span(true)
            .with_span_list(false)
            .try_init(),
        LogFormat::Pretty => builder.try_init(),
    };
    install_panic_hook();
}

/// Sends panics to [`log_panic`] instead of stderr.
pub fn install_panic_hook() {
    std::panic::set_hook(Box::new(|info| {
        let message = panic_message(info.payload());
        let location = info.location().map(|l| l.to_string());
        log_panic(&message, location.as_deref());
    }));
}

/// The text of a panic payload (`panic!` with a literal or with format arguments).
pub fn panic_message(payload: &(dyn std::any::Any + Send)) -> String {
    if let Some(s) = payload.downcast_ref::<&str>() {
        (*s).to_string()
    } else if let Some(s) = payload.downcast_ref::<String>() {
        s.clone()
    } else {
        "non-string panic payload".to_string()
    }
}

/// Logs a panic as one error line, through the redacting writer like every other line. Without
/// a subscriber (a panic before logging is set up) it goes to stderr, redacted all the same.
pub fn log_panic(message: &str, location: Option<&str>) {
    let thread = std::thread::current();
    let thread = thread.name().unwrap_or("unnamed");
    let backtrace = std::backtrace::Backtrace::capture();
    let backtrace = match backtrace.status() {
        std::backtrace::BacktraceStatus::Captured => Some(backtrace.to_string()),
        _ => None,
    };
    if !no_subscriber() {
        tracing::error!(
            panic.thread = thread,
            panic.location = location,
            panic.backtrace = backtrace,
            "panic: {message}"
        );
    } else {
        let line = format!(
            "panic in thread {thread} at {}: {message}",
            location.unwrap_or("unknown location")
        );
        eprintln!("{}", syncguard_core::redact::redact(&line));
        if let Some(bt) = backtrace {
            eprintln!("{}", syncguard_core::redact::redact(&bt));
        }
    }
}

/// Whether no subscriber is in effect on this thread (neither global nor scoped).
fn no_subscriber() -> bool {
    tracing::dispatcher::get_default(|d| d.is::<tracing::subscriber::NoSubscriber>())
}

/// A writer that keeps everything in memory, for tests that read the log.
#[derive(Clone, Default)]
pub struct Capture(pub Arc<Mutex<Vec<u8>>>);

impl Capture {
    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.0.lock().expect("capture lock")).into_owned()
    }
}

impl Write for Capture {
    fn write(&mut self, data: &[u8]) -> io::Result<usize> {
        self.0.lock().expect("capture lock").extend_from_slice(data);
        Ok(data.len())
    }
    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

impl<'a> MakeWriter<'a> for Capture {
    type Writer = Capture;
    fn make_writer(&'a self) -> Capture {
        self.clone()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tracing_subscriber::fmt;

    #[test]
    fn pii_never_reaches_the_log() {
        let capture = Capture::default();
        let subscriber = fmt()
            .json()
            .with_writer(RedactingMakeWriter::new(capture.clone()))
            .finish();
        tracing::subscriber::with_default(subscriber, || {
            tracing::info!(email = "jane.doe@example.com", "customer signed up");
            tracing::warn!(phone = "+1 415-555-0132", "sms failed for +44 7911 123456");
            tracing::info!(
                header = "Authorization: Bearer sg_live_abcdef0123456789",
                "request"
            );
            tracing::error!(
                body = r#"{"client_secret":"s3cr3t-value","sku":"A1"}"#,
                "provider refused"
            );
            tracing::info!("secret whsec_C2FVsBQIhrscChlQIMV+b5sSYspob7oD rotated");
        });
        let log = capture.text();
        assert_eq!(log.lines().count(), 5, "{log}");
        for leaked in [
            "jane.doe",
            "555-0132",
            "7911",
            "abcdef0123456789",
            "s3cr3t-value",
            "C2FVsBQIhrsc",
        ] {
            assert!(!log.contains(leaked), "{leaked} leaked into: {log}");
        }
        assert!(
            log.contains("customer signed up") && log.contains("\"sku\\\":\\\"A1\\\""),
            "{log}"
        );
    }

    #[test]
    fn a_panic_is_one_redacted_json_line() {
        let capture = Capture::default();
        let subscriber = fmt()
            .json()
            .with_writer(RedactingMakeWriter::new(capture.clone()))
            .finish();
        // The hook is process-wide: other tests panicking meanwhile have no subscriber on
        // their thread, so theirs still reach stderr (redacted), and the default comes back.
        let previous = std::panic::take_hook();
        install_panic_hook();
        let caught = tracing::subscriber::with_default(subscriber, || {
            std::panic::catch_unwind(|| {
                panic!("refund for jane.doe@example.com failed with Bearer eyJhbGciOi.e30.sig")
            })
        });
        std::panic::set_hook(previous);
        assert!(caught.is_err());
        let log = capture.text();
        assert_eq!(log.lines().count(), 1, "{log}");
        let line: serde_json::Value = serde_json::from_str(log.trim()).expect(&log);
        assert_eq!(line["level"], "ERROR", "{log}");
        let location = line["fields"]["panic.location"].as_str().unwrap_or("");
        assert!(location.contains("logging.rs"), "{log}");
        let message = line["fields"]["message"].as_str().unwrap();
        assert!(message.starts_with("panic: refund for [email]"), "{log}");
        for leaked in ["jane.doe", "eyJhbGciOi"] {
            assert!(!log.contains(leaked), "{leaked} leaked into: {log}");
        }
    }
}
