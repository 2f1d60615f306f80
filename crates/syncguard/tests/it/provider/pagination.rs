//! Pagination: next_token and offset against the mock, opaque cursor and `Link` against a tiny
//! server; every style returns every item exactly once.

use super::*;
use axum::extract::Query;
use axum::http::HeaderMap;
use axum::routing::get;
use serde_json::json;
use std::collections::BTreeSet;
use syncguard::provider::ProviderClient;
use syncguard_core::class::ErrorClass;
use syncguard_store::Backend;

crate::on_both_stores!(every_pagination_style_returns_each_item_once);

/// Every id of `resource`, page by page; also returns how many pages there were.
async fn walk(client: &ProviderClient, resource: &str) -> (Vec<String>, usize) {
    let (mut ids, mut pages, mut cursor) = (Vec::new(), 0, None::<String>);
    loop {
        let page = client
            .list_page(resource, cursor.as_deref(), None)
            .await
            .unwrap();
        let res = client.resource(resource).unwrap();
        ids.extend(page.items.iter().map(|i| res.id_of(i).unwrap()));
        pages += 1;
        match page.next {
            Some(next) => cursor = Some(next),
            None => return (ids, pages),
        }
    }
}

/// A tiny API of 45 things, paged by an opaque cursor (`/cursor`) and by `Link` (`/link`).
async fn paged_api() -> String {
    #[derive(serde::Deserialize)]
    struct Q {
        cursor: Option<String>,
        page: Option<usize>,
        limit: Option<usize>,
        per_page: Option<usize>,
    }
    const N: usize = 45;
    let cursor = |Query(q): Query<Q>| async move {
        let from: usize = q
            .cursor
            .as_deref()
            .and_then(|c| c.strip_prefix("pos-"))
            .map_or(0, |n| n.parse().unwrap());
        let to = (from + q.limit.unwrap_or(5)).min(N);
        let items: Vec<_> = (from..to)
            .map(|i| json!({"id": format!("c-{i}")}))
            .collect();
        axum::Json(
            json!({"items": items, "has_more": to < N, "meta": {"next": format!("pos-{to}")}}),
        )
    };
    let link = |Query(q): Query<Q>| async move {
        let (page, per) = (q.page.unwrap_or(1), q.per_page.unwrap_or(5));
        let items: Vec<_> = ((page - 1) * per..(page * per).min(N))
            .map(|i| json!({"id": i}))
            .collect();
        let mut headers = HeaderMap::new();
        if page * per < N {
            let next = format!("</link?page={}&per_page={per}>; rel=\"next\", </link?page=1&per_page={per}>; rel=\"first\"", page + 1);
            headers.insert("link", next.parse().unwrap());
        }
        (headers, axum::Json(items))
    };
    serve(
        axum::Router::new()
            .route("/cursor", get(cursor))
            .route("/link", get(link))
            .route(
                "/hop",
                get(|| async { axum::response::Redirect::temporary("/link?page=5") }),
            )
            .route(
                "/away",
                get(|| async { axum::response::Redirect::temporary("http://127.0.0.1:1/steal") }),
            ),
    )
    .await
}

async fn every_pagination_style_returns_each_item_once(backend: Backend) {
    let mock = mock(0.0, 57).await;
    for i in 0..23 {
        mock.state()
            .set_inventory_item(&format!("SKU-{i:02}"), json!({"product": {"title": "Mug"}}));
    }
    let api = paged_api().await;
    let bearer = "[auth]\ntype = \"bearer\"\nfield = \"token\"\n";
    let dir = tempfile::tempdir().unwrap();
    let files = definitions(&dir, &[
        ("trackstar_paged", include_str!("../../../../../providers/trackstar.toml").replace("name = \"trackstar\"", "name = \"trackstar_paged\"").replace("page_size = 1000", "page_size = 10").replace("rps = 10", "rps = 100")),
        ("ebay_paged", include_str!("../../../../../providers/ebay.toml").replace("name = \"ebay\"", "name = \"ebay_paged\"").replace("page_size = 100 ", "page_size = 7 ").replace("rps = 10", "rps = 100")),
        ("cursored", format!("name = \"cursored\"\nbase_url = \"http://127.0.0.1:1\"\n{bearer}{LIMIT}[pagination]\nstyle = \"cursor\"\nitems = \"/items\"\nparam = \"cursor\"\nnext = \"/meta/next\"\nhas_more = \"/has_more\"\nlimit_param = \"limit\"\npage_size = 10\n[resources.things]\npath = \"/cursor\"\n")),
        ("linked", format!("name = \"linked\"\nbase_url = \"http://127.0.0.1:1\"\n{bearer}{LIMIT}[pagination]\nstyle = \"link\"\nlimit_param = \"per_page\"\npage_size = 10\n[resources.things]\npath = \"/link\"\n[resources.hop]\npath = \"/hop\"\n[resources.away]\npath = \"/away\"\n")),
    ]);
    let app = spawn_with_definitions(backend, files).await;
    let (_, admin) = app.tenant_with_key("acme", "admin").await;
    let ebay_creds = json!({"client_id": "a", "client_secret": "b"});
    let on_mock = json!({"base_url": mock.base_url});
    let on_api = json!({"base_url": api});
    let orders: BTreeSet<String> = mock
        .state()
        .records("orders")
        .unwrap()
        .iter()
        .map(|o| o["id"].as_str().unwrap().to_string())
        .collect();
    let skus: BTreeSet<String> = (0..23).map(|i| format!("SKU-{i:02}")).collect();
    let cursor_ids: BTreeSet<String> = (0..45).map(|i| format!("c-{i}")).collect();
    let link_ids: BTreeSet<String> = (0..45).map(|i| i.to_string()).collect();
    let cases = [
        (
            "trackstar_paged",
            trackstar_creds(),
            &on_mock,
            "orders",
            &orders,
            6,
        ),
        (
            "trackstar",
            trackstar_creds(),
            &on_mock,
            "orders",
            &orders,
            1,
        ),
        (
            "ebay_paged",
            ebay_creds.clone(),
            &on_mock,
            "inventory_item",
            &skus,
            4,
        ),
        ("ebay", ebay_creds, &on_mock, "inventory_item", &skus, 1),
        (
            "cursored",
            json!({"token": "t"}),
            &on_api,
            "things",
            &cursor_ids,
            5,
        ),
        (
            "linked",
            json!({"token": "t"}),
            &on_api,
            "things",
            &link_ids,
            5,
        ),
    ];
    for (provider, creds, config, resource, expected, pages) in cases {
        let id = connect(&app, &admin, provider, creds, config.clone()).await;
        let c = client(&app.app, &id).await;
        let (ids, walked) = walk(&c, resource).await;
        let unique: BTreeSet<String> = ids.iter().cloned().collect();
        assert_eq!(unique.len(), ids.len(), "{provider}: an item came twice");
        assert_eq!(&unique, expected, "{provider}: every item once");
        assert_eq!(walked, pages, "{provider}: pages");
    }
    // Redirects are followed within the provider's origin only: credentials stay with it.
    let id = connect(
        &app,
        &admin,
        "linked",
        json!({"token": "t"}),
        on_api.clone(),
    )
    .await;
    let linked = client(&app.app, &id).await;
    assert_eq!(
        linked
            .list_page("hop", None, None)
            .await
            .unwrap()
            .items
            .len(),
        5
    );
    let e = linked.list_page("away", None, None).await.unwrap_err();
    assert_eq!(
        (e.class, e.status),
        (ErrorClass::Permanent, Some(307)),
        "{e}"
    );
    assert!(e.message.contains("another origin"), "{e}");
    // The since filter reaches the provider: nothing has changed in the future.
    let id = connect(
        &app,
        &admin,
        "trackstar",
        trackstar_creds(),
        on_mock.clone(),
    )
    .await;
    let tomorrow = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_millis() as i64
        + 86_400_000;
    assert!(client(&app.app, &id)
        .await
        .list_page("orders", None, Some(tomorrow))
        .await
        .unwrap()
        .items
        .is_empty());
    app.stop().await;
    mock.shutdown().await;
}
