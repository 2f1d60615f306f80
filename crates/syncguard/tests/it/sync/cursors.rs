//! Cursors: rows whose cursor field is null or unreadable are stored, counted and reported;
//! a run queries from the high-water mark (or the previous run's start) minus the overlap,
//! while the stored cursor stays the largest time committed.

use super::*;
use axum::extract::Query;
use axum::routing::get;
use std::sync::Mutex;

crate::on_both_stores!(
    rows_without_a_cursor_are_stored_and_runs_query_from_the_cursor_minus_the_overlap
);

/// A provider of one resource whose items' `modified` is sometimes null or garbage; it records
/// every `since` it is asked for.
async fn odd_provider() -> (String, Arc<Mutex<Vec<Option<String>>>>) {
    #[derive(serde::Deserialize)]
    struct Q {
        since: Option<String>,
        page: Option<String>,
    }
    let asked = Arc::new(Mutex::new(Vec::new()));
    let log = asked.clone();
    let router = axum::Router::new().route(
        "/things",
        get(move |Query(q): Query<Q>| {
            let log = log.clone();
            async move {
                if q.page.is_none() {
                    log.lock().unwrap().push(q.since.clone());
                }
                let body = match q.page.as_deref() {
                    None => json!({"items": [
                        {"id": "a", "modified": "2030-01-01T00:00:00Z"},
                        {"id": "b", "modified": null},
                    ], "next": "p2"}),
                    _ => json!({"items": [
                        {"id": "c", "modified": "not a time"},
                        {"id": "d", "modified": "2030-01-02T00:00:00.500Z"},
                        {"modified": "2030-01-03T00:00:00Z"},
                    ], "next": null}),
                };
                axum::Json(body)
            }
        }),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, router).await.unwrap() });
    (url, asked)
}

const ODD: &str = r#"
name = "odd"
base_url = "http://127.0.0.1:9"
[auth]
type = "bearer"
[rate_limit]
rps = 100
burst = 10
[pagination]
style = "next_token"
items = "/items"
param = "page"
next = "/next"
[resources.things]
path = "/things"
id = "/id"
updated_at = "/modified"
since_param = "since"
"#;

async fn rows_without_a_cursor_are_stored_and_runs_query_from_the_cursor_minus_the_overlap(
    backend: Backend,
) {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("odd.toml");
    std::fs::write(&path, ODD).unwrap();
    let files = vec![path.display().to_string()];
    let app = TestApp::spawn_with(
        backend,
        move |c| c.provider_files = files,
        Arc::new(SystemClock),
        Handlers::builtin(),
    )
    .await;
    let (_t, admin) = tenant(&app).await;
    let (url, asked) = odd_provider().await;
    let body = json!({ "provider": "odd", "name": "odd_1", "credentials": {"access_token": "t"}, "config": {"base_url": url} });
    let (s, c) = app.post("/v1/connections", &admin, body).await;
    assert_eq!(s, 201, "{c}");
    let id = c["id"].as_str().unwrap();
    let cps = backfilled(&app, &admin, id, Duration::from_secs(30)).await;
    // a, b, c and d are stored (b and c without a usable time), the id-less item cannot be.
    let stored = local(&app, id, "things").await;
    assert_eq!(stored.keys().collect::<Vec<_>>(), ["a", "b", "c", "d"]);
    assert_eq!(cps[0]["missing_cursor_total"], 2, "{}", cps[0]);
    assert_eq!(
        cps[0]["cursor"], "2030-01-02T00:00:00.500Z",
        "the largest readable time"
    );
    let b = app
        .db
        .store
        .get_record(&Scope::All, id, "things", "b")
        .await
        .unwrap()
        .unwrap();
    assert_eq!(b.remote_updated_at, None);
    // The next run asks from the high-water mark (or the previous run's start, if earlier)
    // minus two minutes; the stored cursor stays where it was.
    let (s, _) = app
        .post(&format!("/v1/connections/{id}/sync"), &admin, json!({}))
        .await;
    assert_eq!(s, 202);
    let after = synced_after(&app, &admin, id, &cps, Duration::from_secs(30)).await;
    let previous_start =
        humantime::parse_rfc3339(cps[0]["last_sync_at"].as_str().unwrap()).unwrap();
    let expected = syncguard::clock::rfc3339(
        previous_start
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_millis() as i64
            - 120_000,
    );
    let asked = asked.lock().unwrap().clone();
    assert_eq!(asked.len(), 2, "{asked:?}");
    assert!(asked[0].is_some(), "the backfill reads a window");
    // The cursor (2030) is later than the previous run's start: the start bounds the query.
    assert_eq!(asked[1].as_deref(), Some(expected.as_str()), "{asked:?}");
    assert_eq!(after[0]["cursor"], cps[0]["cursor"]);
    assert_eq!(
        after[0]["missing_cursor_total"], 4,
        "counted again on the re-read"
    );
    let feed = app
        .db
        .store
        .list_changes(&Scope::All, None, Some(id), 0, 100)
        .await
        .unwrap();
    assert_eq!(
        feed.len(),
        4,
        "re-read rows hash the same and change nothing"
    );
    app.stop().await;
}
