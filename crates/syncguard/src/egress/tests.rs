//! The checks on URLs and on resolved addresses, with a resolver table standing in for DNS and
//! a real HTTP server on 127.0.0.1 behind the names.

use super::*;
use std::collections::HashMap;

fn policy(production: bool, allow: &[&str]) -> Policy {
    let allow: Vec<String> = allow.iter().map(|s| s.to_string()).collect();
    Policy::new(production, &allow).unwrap()
}

/// An egress whose DNS is `table` (names absent from it do not resolve).
fn with_table(p: Policy, table: &[(&str, &[&str])]) -> Egress {
    let table: HashMap<String, Vec<IpAddr>> = table
        .iter()
        .map(|(name, ips)| {
            (
                name.to_string(),
                ips.iter().map(|i| i.parse().unwrap()).collect(),
            )
        })
        .collect();
    let table = Arc::new(table);
    let lookup: Lookup = Arc::new(move |host: String| {
        let found = table.get(&host).cloned();
        Box::pin(async move {
            found.ok_or_else(|| std::io::Error::new(std::io::ErrorKind::NotFound, "no such host"))
        })
    });
    Egress::with_lookup(p, lookup)
}

#[test]
fn base_urls_are_plain_http_urls_to_allowed_literals() {
    let dev = Egress::new(policy(false, &[]));
    for ok in [
        "https://api.example.com",
        "https://api.example.com/v1/",
        "http://127.0.0.1:8080",
        "http://[::1]:9000/base",
        "http://10.0.0.5",
    ] {
        dev.check_base_url(ok)
            .unwrap_or_else(|e| panic!("{ok}: {e}"));
    }
    for (bad, why) in [
        ("http://169.254.169.254/", "link-local"),
        ("http://169.254.169.254/latest/meta-data", "link-local"),
        ("http://[::ffff:169.254.169.254]/", "link-local"),
        ("http://[::ffff:a9fe:a9fe]/", "link-local"),
        ("http://[fe80::1]/", "link-local"),
        ("http://[fd00:ec2::254]/", "metadata"),
        ("http://100.100.100.200/", "metadata"),
        ("http://0.0.0.0:8080/", "this network"),
        ("http://[::]:8080/", "unspecified"),
        ("http://224.0.0.1/", "multicast"),
        ("http://255.255.255.255/", "broadcast"),
        // Other spellings of a literal address are normalized by the URL parser first.
        ("http://2852039166/", "link-local"),
        ("http://0xa9.0xfe.0xa9.0xfe/", "link-local"),
        ("https://api.example.com/?token=1", "query"),
        ("https://api.example.com/?", "query"),
        ("https://api.example.com/#x", "fragment"),
        ("https://user:pw@api.example.com/", "user name"),
        ("https://user@api.example.com/", "user name"),
        ("ftp://api.example.com/", "http(s)"),
        ("file:///etc/passwd", "http(s)"),
        ("nowhere", "http(s)"),
    ] {
        let e = dev.check_base_url(bad).unwrap_err();
        assert!(e.contains(why), "{bad}: {e}");
    }
}

#[test]
fn production_refuses_internal_literals_unless_allowlisted() {
    let prod = Egress::new(policy(true, &[]));
    for bad in [
        "http://127.0.0.1:8080",
        "http://127.1/",
        "http://0x7f.1/",
        "http://2130706433/",
        "http://[::1]/",
        "http://10.1.2.3/",
        "http://172.16.0.1/",
        "http://192.168.1.1/",
        "http://100.64.0.1/",
        "http://[fc00::1]/",
        "http://[::ffff:127.0.0.1]/",
    ] {
        let e = prod.check_base_url(bad).unwrap_err();
        assert!(e.contains("egress.allow"), "{bad}: {e}");
    }
    prod.check_base_url("https://api.example.com").unwrap();
    let allowed = Egress::new(policy(true, &["127.0.0.0/8", "10.0.0.0/8"]));
    allowed.check_base_url("http://127.0.0.1:8080").unwrap();
    allowed.check_base_url("http://10.1.2.3/").unwrap();
    assert!(allowed.check_base_url("http://192.168.1.1/").is_err());
    assert!(allowed.check_base_url("http://169.254.169.254/").is_err());
}

#[tokio::test]
async fn resolved_addresses_are_filtered_by_the_policy() {
    let table: &[(&str, &[&str])] = &[
        ("meta.test", &["169.254.169.254"]),
        ("meta6.test", &["fe80::1", "::ffff:169.254.169.254"]),
        ("inside.test", &["127.0.0.1"]),
        ("mixed.test", &["169.254.169.254", "127.0.0.1"]),
        ("public.test", &["93.184.216.34"]),
    ];
    let dev = with_table(policy(false, &[]), table);
    let refused = |r: Result<Vec<IpAddr>, ResolveError>| match r {
        Err(ResolveError::Refused(r)) => r.0,
        other => panic!("expected a refusal, got {other:?}"),
    };
    assert!(refused(dev.resolve_allowed("meta.test").await).contains("link-local"));
    assert!(refused(dev.resolve_allowed("meta6.test").await).contains("link-local"));
    // The refused address is dropped, the allowed one kept.
    let mixed = dev.resolve_allowed("mixed.test").await.unwrap();
    assert_eq!(mixed, ["127.0.0.1".parse::<IpAddr>().unwrap()]);
    assert!(matches!(
        dev.resolve_allowed("nowhere.test").await,
        Err(ResolveError::Lookup(_))
    ));

    let prod = with_table(policy(true, &["allowed.test"]), table);
    let e = refused(prod.resolve_allowed("inside.test").await);
    assert!(
        e.contains("egress.allow") && !e.contains("127.0.0.1"),
        "{e}"
    );
    assert_eq!(prod.resolve_allowed("public.test").await.unwrap().len(), 1);
    let by_name = with_table(
        policy(true, &["inside.test"]),
        &[("inside.test", &["127.0.0.1"])],
    );
    assert_eq!(
        by_name.resolve_allowed("inside.test").await.unwrap().len(),
        1
    );
}

/// Serves `hello` on 127.0.0.1; returns its port.
async fn hello_server() -> u16 {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    let router = axum::Router::new().route("/", axum::routing::get(|| async { "hello" }));
    tokio::spawn(async move { axum::serve(listener, router).await.unwrap() });
    port
}

#[tokio::test]
async fn a_client_never_connects_to_a_refused_address() {
    let port = hello_server().await;
    let table: &[(&str, &[&str])] = &[
        ("inside.test", &["127.0.0.1"]),
        ("meta.test", &["169.254.169.254"]),
    ];
    let get = |egress: Egress, host: &'static str| async move {
        let client = egress.client_builder().build().unwrap();
        client.get(format!("http://{host}:{port}/")).send().await
    };
    // Outside production the name reaches the server on loopback.
    let dev = with_table(policy(false, &[]), table);
    let ok = get(dev.clone(), "inside.test").await.unwrap();
    assert_eq!(ok.text().await.unwrap(), "hello");
    // A name resolving to a metadata address fails, and the refusal is found in the error.
    let e = get(dev, "meta.test").await.unwrap_err();
    let r = refused_in(&e).expect("an egress refusal");
    assert!(
        r.0.contains("meta.test") && r.0.contains("link-local"),
        "{r}"
    );
    // In production the same loopback server is out of reach, unless its name is allowlisted.
    let prod = with_table(policy(true, &[]), table);
    let e = get(prod, "inside.test").await.unwrap_err();
    assert!(refused_in(&e).is_some(), "{e:?}");
    let allowed = with_table(policy(true, &["inside.test"]), table);
    assert_eq!(get(allowed, "inside.test").await.unwrap().status(), 200);
}
