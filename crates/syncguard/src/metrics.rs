//! Prometheus metrics (SPEC §3.7): `syncguard_<noun>_<unit>`, `_total` for counters, `_seconds`
//! for durations. Labels stay low-cardinality — kind, outcome, state, method, route template,
//! status — never a tenant, connection or URL; per-connection detail lives in `/v1/health`.
//! Beside them: `syncguard_build_info{version,os,arch} 1` and, on Linux, the standard
//! `process_*` metrics.

use prometheus::{
    Encoder, HistogramOpts, HistogramVec, IntCounterVec, IntGaugeVec, Opts, Registry, TextEncoder,
};

/// Every metric the process exports, registered once.
#[derive(Clone)]
pub struct Metrics {
    registry: Registry,
    /// Finished job runs by kind and outcome (succeeded, retried, dead, lost).
    pub jobs_total: IntCounterVec,
    /// Handler run time by kind.
    pub job_duration_seconds: HistogramVec,
    /// Jobs per state, refreshed periodically from the store.
    pub queue_jobs: IntGaugeVec,
    /// Leases found expired and rescued, by result (retryable, dead).
    pub lease_rescues_total: IntCounterVec,
    /// API requests by method, route template and status.
    pub http_requests_total: IntCounterVec,
    pub http_request_duration_seconds: HistogramVec,
    /// Errors met by background loops, by loop.
    pub background_errors_total: IntCounterVec,
    /// Open store connections by pool and state (busy, idle), refreshed with the queue gauges.
    pub store_connections: IntGaugeVec,
}

const LATENCY_BUCKETS: &[f64] = &[
    0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0,
    60.0,
];

impl Metrics {
    pub fn new() -> Metrics {
        let registry = Registry::new();
        let counter = |name: &str, help: &str, labels: &[&str]| {
            let c = IntCounterVec::new(Opts::new(name, help), labels).expect("valid metric");
            registry
                .register(Box::new(c.clone()))
                .expect("registered once");
            c
        };
        let histogram = |name: &str, help: &str, labels: &[&str]| {
            let h = HistogramVec::new(
                HistogramOpts::new(name, help).buckets(LATENCY_BUCKETS.to_vec()),
                labels,
            )
            .expect("valid metric");
            registry
                .register(Box::new(h.clone()))
                .expect("registered once");
            h
        };
        let queue_jobs = IntGaugeVec::new(
            Opts::new("syncguard_queue_jobs", "Jobs in the queue by state."),
            &["state"],
        )
        .expect("valid metric");
        registry
            .register(Box::new(queue_jobs.clone()))
            .expect("registered once");
        let store_connections = IntGaugeVec::new(
            Opts::new(
                "syncguard_store_connections",
                "Open store connections by pool (main on PostgreSQL; write, read on SQLite) and state (busy, idle).",
            ),
            &["pool", "state"],
        )
        .expect("valid metric");
        registry
            .register(Box::new(store_connections.clone()))
            .expect("registered once");
        let build_info = IntGaugeVec::new(
            Opts::new(
                "syncguard_build_info",
                "Always 1; the labels say which build of syncguard runs.",
            ),
            &["version", "os", "arch"],
        )
        .expect("valid metric");
        build_info
            .with_label_values(&[
                env!("CARGO_PKG_VERSION"),
                std::env::consts::OS,
                std::env::consts::ARCH,
            ])
            .set(1);
        registry
            .register(Box::new(build_info))
            .expect("registered once");
        // process_cpu_seconds_total, process_resident_memory_bytes, process_open_fds, … of this
        // process (read from /proc).
        #[cfg(target_os = "linux")]
        registry
            .register(Box::new(
                prometheus::process_collector::ProcessCollector::for_self(),
            ))
            .expect("registered once");
        Metrics {
            jobs_total: counter(
                "syncguard_jobs_total",
                "Job runs finished, by kind and outcome.",
                &["kind", "outcome"],
            ),
            job_duration_seconds: histogram(
                "syncguard_job_duration_seconds",
                "Job handler run time.",
                &["kind"],
            ),
            lease_rescues_total: counter(
                "syncguard_lease_rescues_total",
                "Jobs whose lease expired, by what became of them.",
                &["result"],
            ),
            http_requests_total: counter(
                "syncguard_http_requests_total",
                "API requests by method, route and status.",
                &["method", "route", "status"],
            ),
            http_request_duration_seconds: histogram(
                "syncguard_http_request_duration_seconds",
                "API request latency.",
                &["method", "route"],
            ),
            background_errors_total: counter(
                "syncguard_background_errors_total",
                "Errors met by background loops.",
                &["loop"],
            ),
            queue_jobs,
            store_connections,
            registry,
        }
    }

    /// The registry in Prometheus text exposition format 0.0.4.
    pub fn render(&self) -> String {
        let mut buf = Vec::new();
        TextEncoder::new()
            .encode(&self.registry.gather(), &mut buf)
            .expect("text encoding cannot fail");
        String::from_utf8(buf).expect("exposition format is utf-8")
    }

    pub fn registry(&self) -> &Registry {
        &self.registry
    }
}

impl Default for Metrics {
    fn default() -> Self {
        Metrics::new()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn build_info_and_process_metrics_are_exported() {
        let text = Metrics::new().render();
        let line = format!(
            "syncguard_build_info{{arch=\"{}\",os=\"{}\",version=\"{}\"}} 1",
            std::env::consts::ARCH,
            std::env::consts::OS,
            env!("CARGO_PKG_VERSION")
        );
        assert!(text.lines().any(|l| l == line), "{line} in\n{text}");
        #[cfg(target_os = "linux")]
        for name in [
            "process_cpu_seconds_total",
            "process_resident_memory_bytes",
            "process_open_fds",
            "process_start_time_seconds",
        ] {
            let value = text
                .lines()
                .find_map(|l| l.strip_prefix(&format!("{name} ")))
                .unwrap_or_else(|| panic!("{name} in\n{text}"));
            assert!(value.parse::<f64>().unwrap() >= 0.0, "{name} {value}");
        }
        #[cfg(target_os = "linux")]
        {
            let rss: f64 = text
                .lines()
                .find_map(|l| l.strip_prefix("process_resident_memory_bytes "))
                .unwrap()
                .parse()
                .unwrap();
            assert!(
                rss > 1_000_000.0,
                "a running test process has resident memory: {rss}"
            );
        }
    }
}
