use super::*;

fn scalar(k: &str) -> Option<EnvKey> {
    Some(EnvKey::Scalar(k.into()))
}

#[test]
fn env_names_map_to_keys() {
    assert_eq!(env_key("SYNCGUARD_DATABASE_URL"), scalar("database_url"));
    assert_eq!(
        env_key("SYNCGUARD_QUEUE_LEASE_MS"),
        scalar("queue.lease_ms")
    );
    assert_eq!(
        env_key("SYNCGUARD_API_BODY_LIMIT_BYTES"),
        scalar("api.body_limit_bytes")
    );
    assert_eq!(
        env_key("SYNCGUARD_MASTER_KEY_FILE"),
        scalar("master_key_file")
    );
    assert_eq!(
        env_key("SYNCGUARD_PREVIOUS_MASTER_KEYS"),
        Some(EnvKey::List("previous_master_keys".into()))
    );
    assert_eq!(
        env_key("SYNCGUARD_PROVIDER_FILES"),
        Some(EnvKey::List("provider_files".into()))
    );
    assert_eq!(
        env_key("SYNCGUARD_QUEUE_KINDS_WEBHOOK_PROCESS_MAX_ATTEMPTS"),
        scalar("queue.kinds.webhook.process.max_attempts")
    );
    assert_eq!(
        env_key("SYNCGUARD_QUEUE_KINDS_MY__KIND_TIMEOUT_MS"),
        scalar("queue.kinds.my_kind.timeout_ms")
    );
    assert_eq!(env_key("SYNCGUARD_QUEUE_KINDS_TIMEOUT_MS"), None);
    assert_eq!(env_key("SYNCGUARD_QUEUE_WOKERS"), None);
    assert_eq!(env_key("SYNCGUARD_QUEUE"), None);
    assert_eq!(env_key("DATABASE_URL"), None);
    for var in CLI_VARIABLES {
        assert_eq!(env_key(var), None, "{var} is not configuration");
    }
}

#[test]
fn every_key_has_a_variable() {
    // Each key (but the per-kind map, tested above) round-trips through its variable name.
    let keys = known_keys();
    assert!(keys.len() >= 30, "{keys:?}");
    for (path, list) in keys {
        let var = format!("SYNCGUARD_{}", path.replace('.', "_").to_ascii_uppercase());
        let want = if list {
            EnvKey::List(path.clone())
        } else {
            EnvKey::Scalar(path.clone())
        };
        assert_eq!(env_key(&var), Some(want), "{var}");
    }
}

#[test]
// figment's Jail closure returns figment's own (large) error type.
#[allow(clippy::result_large_err)]
fn cli_variables_never_collide_with_keys() {
    figment::Jail::expect_with(|jail| {
        for var in CLI_VARIABLES {
            jail.set_env(var, "x");
        }
        jail.set_env("SYNCGUARD_QUEUE_WOKERS", "3");
        let c = Config::load(None, &Overrides::default()).unwrap().config;
        assert_eq!(c, Config::default());
        assert_eq!(unrecognized_env_vars(), ["SYNCGUARD_QUEUE_WOKERS"]);
        Ok(())
    });
}

#[test]
#[allow(clippy::result_large_err)]
fn every_kind_of_key_is_settable_by_environment() {
    figment::Jail::expect_with(|jail| {
        jail.set_env("SYNCGUARD_MASTER_KEY_FILE", "/etc/syncguard/master.key");
        jail.set_env("SYNCGUARD_PREVIOUS_MASTER_KEYS", "a2V5MQ==, a2V5Mg==");
        jail.set_env(
            "SYNCGUARD_PROVIDER_FILES",
            "/etc/p/one.toml,/etc/p/two.toml",
        );
        jail.set_env("SYNCGUARD_QUEUE_KINDS_WEBHOOK_PROCESS_MAX_ATTEMPTS", "9");
        jail.set_env("SYNCGUARD_QUEUE_KINDS_WEBHOOK_PROCESS_TIMEOUT_MS", "1500");
        jail.set_env("SYNCGUARD_QUEUE_KINDS_SYNC_RESOURCE_TIMEOUT_MS", "60000");
        jail.set_env("SYNCGUARD_QUEUE_WORKERS", "7");
        jail.set_env("SYNCGUARD_ROLE", "worker");
        let c = Config::load(None, &Overrides::default()).unwrap().config;
        assert_eq!(c.master_key_file, "/etc/syncguard/master.key");
        assert_eq!(c.previous_master_keys, ["a2V5MQ==", "a2V5Mg=="]);
        assert_eq!(c.provider_files, ["/etc/p/one.toml", "/etc/p/two.toml"]);
        let wp = &c.queue.kinds["webhook.process"];
        assert_eq!((wp.max_attempts, wp.timeout_ms), (Some(9), Some(1500)));
        assert_eq!(c.queue.kinds["sync.resource"].timeout_ms, Some(60_000));
        assert_eq!(c.max_attempts("webhook.process"), 9);
        assert_eq!((c.queue.workers, c.role), (7, NodeRole::Worker));
        // The environment wins over the file, key by key within a kind.
        jail.create_file(
            "syncguard.toml",
            "[queue.kinds.\"webhook.process\"]\nmax_attempts = 2\n[queue.kinds.\"sync.tick\"]\nmax_attempts = 3\n",
        )?;
        let c = Config::load(None, &Overrides::default()).unwrap().config;
        assert_eq!(c.queue.kinds["webhook.process"].max_attempts, Some(9));
        assert_eq!(c.queue.kinds["sync.tick"].max_attempts, Some(3));
        // A bad value names the key.
        jail.set_env("SYNCGUARD_QUEUE_KINDS_SYNC_TICK_MAX_ATTEMPTS", "often");
        let e = Config::load(None, &Overrides::default())
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("queue.kinds.sync.tick.max_attempts") && e.contains("SYNCGUARD_"),
            "{e}"
        );
        Ok(())
    });
}

/// The example file at the root of the repository.
const EXAMPLE: &str = include_str!("../../../../syncguard.example.toml");

#[test]
fn the_example_file_parses_into_exactly_the_defaults() {
    let parsed: Config = toml::from_str(EXAMPLE).expect("the example parses");
    assert_eq!(parsed, Config::default());
}

#[test]
fn the_example_file_names_every_key() {
    // Keys missing from the example would still parse (to their defaults): compare names.
    fn walk(prefix: &str, t: &toml::Table, out: &mut Vec<String>) {
        for (k, v) in t {
            let path = if prefix.is_empty() {
                k.clone()
            } else {
                format!("{prefix}.{k}")
            };
            match v {
                toml::Value::Table(t) if path != "queue.kinds" => walk(&path, t, out),
                _ => out.push(path),
            }
        }
    }
    let table: toml::Table = toml::from_str(EXAMPLE).unwrap();
    let mut in_example = Vec::new();
    walk("", &table, &mut in_example);
    in_example.retain(|k| k != "queue.kinds");
    in_example.sort();
    let mut keys: Vec<String> = known_keys().into_iter().map(|(k, _)| k).collect();
    keys.sort();
    assert_eq!(in_example, keys, "syncguard.example.toml lists every key");
    assert!(
        table["queue"].get("kinds").is_some(),
        "[queue.kinds] is shown"
    );
}

#[test]
fn redaction_hides_passwords_and_master_keys() {
    let c = Config {
        database_url: "postgres://sg:hunter2@db:5432/sg?sslmode=require&password=hunter3".into(),
        previous_master_keys: vec!["c2VjcmV0".into()],
        ..Config::default()
    };
    let r = c.redacted();
    assert_eq!(
        r.database_url,
        "postgres://sg:***@db:5432/sg?sslmode=require&password=***"
    );
    assert_eq!(r.previous_master_keys, ["***"]);
    let text = toml::to_string(&r).unwrap();
    assert!(
        !text.contains("hunter") && !text.contains("c2VjcmV0"),
        "{text}"
    );
}

#[test]
fn defaults_are_valid() {
    Config::default().validate().unwrap();
}

/// Loads `text` as the file, inside a [`figment::Jail`]: the jail's lock keeps tests that
/// set variables from running at the same time.
#[allow(clippy::result_large_err)]
fn load_toml(text: &str) -> Result<Config, ConfigError> {
    let mut out = None;
    figment::Jail::expect_with(|jail| {
        let path = jail.directory().join("syncguard.toml");
        std::fs::write(&path, text).unwrap();
        out = Some(Config::load(Some(&path), &Overrides::default()).map(|l| l.config));
        Ok(())
    });
    out.expect("the jail ran")
}

#[test]
fn file_values_apply_and_errors_name_the_key() {
    let c = load_toml("listen = \"127.0.0.1:9999\"\n[queue]\nworkers = 4\n").unwrap();
    assert_eq!((c.listen.as_str(), c.queue.workers), ("127.0.0.1:9999", 4));
    let e = load_toml("[queue]\nworkers = \"many\"\n")
        .unwrap_err()
        .to_string();
    assert!(e.contains("queue.workers"), "{e}");
    let e = load_toml("[queue]\nwokers = 3\n").unwrap_err().to_string();
    assert!(e.contains("wokers"), "{e}");
    let e = load_toml("listen = \"nowhere\"\n").unwrap_err().to_string();
    assert!(e.contains("`listen`"), "{e}");
    let e = load_toml("[queue]\nlease_ms = 10\n")
        .unwrap_err()
        .to_string();
    assert!(e.contains("queue.lease_ms"), "{e}");
    let c = load_toml("[store]\nacquire_timeout_ms = 700\n").unwrap();
    assert_eq!(c.store.acquire_timeout_ms, 700);
    let e = load_toml("[store]\nprobe_interval_ms = 0\n")
        .unwrap_err()
        .to_string();
    assert!(e.contains("store.probe_interval_ms"), "{e}");
}

#[test]
// figment's Jail closure returns figment's own (large) error type.
#[allow(clippy::result_large_err)]
fn egress_allow_comes_from_the_file_or_the_environment() {
    assert_eq!(
        env_key("SYNCGUARD_EGRESS_ALLOW"),
        Some(EnvKey::List("egress.allow".into()))
    );
    let c = load_toml("[egress]\nallow = [\"10.0.0.0/8\", \"api.internal.example\"]\n").unwrap();
    assert_eq!(c.egress.allow, ["10.0.0.0/8", "api.internal.example"]);
    let e = load_toml("[egress]\nallow = [\"10.0.0.0/99\"]\n")
        .unwrap_err()
        .to_string();
    assert!(
        e.contains("egress.allow") && e.contains("10.0.0.0/99"),
        "{e}"
    );
    figment::Jail::expect_with(|jail| {
        jail.set_env(
            "SYNCGUARD_EGRESS_ALLOW",
            "[\"192.168.0.0/16\", \"db.internal\"]",
        );
        let c = Config::load(None, &Overrides::default()).unwrap().config;
        assert_eq!(c.egress.allow, ["192.168.0.0/16", "db.internal"]);
        jail.set_env("SYNCGUARD_EGRESS_ALLOW", "192.168.0.0/16, db.internal,");
        let c = Config::load(None, &Overrides::default()).unwrap().config;
        assert_eq!(c.egress.allow, ["192.168.0.0/16", "db.internal"]);
        Ok(())
    });
}

/// A change that makes a valid configuration invalid.
type Spoil = fn(&mut Config);

#[test]
fn invalid_health_and_retention_settings_name_their_key() {
    let cases: [(&str, Spoil); 6] = [
        ("health.sync_lag", |c| c.health.sync_lag_warning_s = 1_000.0),
        ("health.error_rate", |c| c.health.error_rate_warning = -0.1),
        ("health.error_rate_critical", |c| {
            c.health.error_rate_critical = 2.0
        }),
        ("health.slo_target", |c| c.health.slo_target = 1.0),
        ("retention.audit_days", |c| c.retention.audit_days = 0),
        ("retention.batch_size", |c| c.retention.batch_size = 0),
    ];
    for (key, spoil) in cases {
        let mut c = Config::default();
        spoil(&mut c);
        let e = c.validate().expect_err(key).to_string();
        assert!(e.contains(&format!("`{key}")), "{key}: {e}");
    }
    Config::default().validate().unwrap();
}
