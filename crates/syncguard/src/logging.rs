//! Logs: JSON lines by default (`--log-format pretty` for people), and every line passes
//! through [`syncguard_core::redact::redact`] on its way out, so no email, phone number, token
//! or secret reaches a log whatever a call site writes.

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
        let clean = syncguard_core::redact::redact(&text);
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
}
