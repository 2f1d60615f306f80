//! `syncguard mock`: the mock provider alone, for demos, tests and benchmarks.

use clap::Args;

#[derive(Debug, Args)]
pub struct MockArgs {
    /// Address to listen on.
    #[arg(long, default_value = "127.0.0.1:9090")]
    pub listen: String,
    /// Seed of the data generator: same seed, same data.
    #[arg(long, default_value_t = 42)]
    pub seed: u64,
    /// Objects per WMS resource.
    #[arg(long, default_value_t = 200)]
    pub records: usize,
    /// Requests per second per access token (0: unlimited).
    #[arg(long, default_value_t = 10.0)]
    pub rate_limit_rps: f64,
    /// Delivery attempts per webhook, the first included (a provider that retries longer rides
    /// out longer receiver outages).
    #[arg(long, default_value_t = 4)]
    pub webhook_max_attempts: u32,
    /// First retry delay of a failed webhook delivery, in milliseconds; each further retry
    /// waits 4× longer.
    #[arg(long, default_value_t = 200)]
    pub webhook_retry_base_ms: u64,
}

pub async fn run(args: MockArgs) -> anyhow::Result<()> {
    let listener = tokio::net::TcpListener::bind(&args.listen).await?;
    let addr = listener.local_addr()?;
    let cfg = syncguard_mock::MockConfig {
        seed: args.seed,
        records: args.records,
        rate_limit_rps: args.rate_limit_rps,
        webhook_max_attempts: args.webhook_max_attempts.max(1),
        webhook_retry_base_ms: args.webhook_retry_base_ms,
        ..Default::default()
    };
    eprintln!("syncguard mock provider listening on http://{addr} (seed {}, {} records per resource, {} req/s per token)", args.seed, args.records, args.rate_limit_rps);
    eprintln!("  WMS: /wms/orders … · eBay: /sell/inventory/v1/inventory_item · control: /_mock/stats, /_mock/faults, /_mock/webhooks");
    syncguard_mock::serve(listener, cfg, crate::app::shutdown_signal()).await
}
