use std::collections::HashSet;

use serde_json::{json, Value};
use syncguard_mock::{format_rfc3339_ms, parse_rfc3339, Resource};

use crate::helpers::{ids, json_ok, mock, unlimited_mock, Api};

#[tokio::test]
async fn pagination_returns_every_item_exactly_once() {
    let mock = unlimited_mock(250).await;
    let api = Api::new(&mock);

    let (items, pages) = api.list_all("orders", "limit=100", "tok").await;
    assert_eq!(pages, 3);
    let listed = ids(&items);
    assert_eq!(
        listed.iter().collect::<HashSet<_>>().len(),
        250,
        "no duplicates"
    );

    let truth = api.control_get("/_mock/records/orders").await;
    assert_eq!(
        ids(truth["data"].as_array().unwrap()),
        listed,
        "same items, same order"
    );

    // Ordered by (updated_date, id).
    let keys: Vec<(i64, String)> = items
        .iter()
        .map(|i| {
            (
                parse_rfc3339(i["updated_date"].as_str().unwrap()).unwrap(),
                i["id"].as_str().unwrap().to_owned(),
            )
        })
        .collect();
    assert!(keys.windows(2).all(|w| w[0] < w[1]));

    // The default limit (1000) returns everything in one page with a null next_token.
    let page = json_ok(api.wms("/wms/orders", "tok").send().await.unwrap()).await;
    assert_eq!(page["data"].as_array().unwrap().len(), 250);
    assert_eq!(page["next_token"], Value::Null);
}

#[tokio::test]
async fn pagination_stays_exactly_once_while_items_change() {
    let mock = unlimited_mock(60).await;
    let api = Api::new(&mock);
    let state = mock.state();
    let before = ids(&state.records("products").unwrap());

    let first = json_ok(
        api.wms("/wms/products?limit=20", "tok")
            .send()
            .await
            .unwrap(),
    )
    .await;
    let mut seen = ids(first["data"].as_array().unwrap());
    // Change one product already returned and one not yet returned.
    state.touch(Resource::Products, &seen[5]).unwrap();
    state.touch(Resource::Products, &before[50]).unwrap();

    let mut token = first["next_token"].as_str().map(str::to_owned);
    while let Some(t) = token {
        let page = json_ok(
            api.wms(&format!("/wms/products?limit=20&page_token={t}"), "tok")
                .send()
                .await
                .unwrap(),
        )
        .await;
        seen.extend(ids(page["data"].as_array().unwrap()));
        token = page["next_token"].as_str().map(str::to_owned);
    }
    assert_eq!(seen.len(), 60, "{seen:?}");
    assert_eq!(
        seen.iter().collect::<HashSet<_>>(),
        before.iter().collect::<HashSet<_>>()
    );
    assert_eq!(
        seen.last(),
        Some(&before[50]),
        "the changed item moved to the end"
    );
}

#[tokio::test]
async fn updated_date_gte_filters() {
    let mock = unlimited_mock(100).await;
    let api = Api::new(&mock);
    let all = mock.state().records("inventory").unwrap();
    let cut = all[40]["updated_date"].as_str().unwrap().to_owned();
    let cut_ms = parse_rfc3339(&cut).unwrap();

    let (items, _) = api
        .list_all(
            "inventory",
            &format!("updated_date[gte]={cut}&limit=7"),
            "tok",
        )
        .await;
    let expected: Vec<_> = all
        .iter()
        .filter(|i| parse_rfc3339(i["updated_date"].as_str().unwrap()).unwrap() >= cut_ms)
        .cloned()
        .collect();
    assert_eq!(ids(&items), ids(&expected));
    assert_eq!(items.len(), 60);

    // An offset timestamp (URL-encoded) means the same instant.
    let local = format_rfc3339_ms(cut_ms + 2 * 3_600_000);
    let encoded = format!("{}%2B02:00", local.trim_end_matches('Z'));
    let (same, _) = api
        .list_all(
            "inventory",
            &format!("updated_date%5Bgte%5D={encoded}"),
            "tok",
        )
        .await;
    assert_eq!(ids(&same), ids(&expected));

    // Items carry the promised fields.
    let item = &items[0];
    for field in [
        "id",
        "sku",
        "onhand",
        "fulfillable",
        "warehouse_id",
        "created_date",
        "updated_date",
    ] {
        assert!(!item[field].is_null(), "inventory.{field} in {item}");
    }
    assert!(item["updated_date"].as_str().unwrap().ends_with('Z'));
}

#[tokio::test]
async fn resources_have_plausible_fields() {
    let mock = mock(5).await;
    let state = mock.state();
    let order = &state.records("orders").unwrap()[0];
    assert!(order["order_number"].is_string() && order["status"].is_string());
    assert!(
        order["line_items"][0]["sku"].is_string() && order["line_items"][0]["quantity"].is_u64()
    );
    assert!(order["ship_to"]["name"].is_string());
    let product = &state.records("products").unwrap()[0];
    assert!(product["sku"].is_string() && product["name"].is_string() && product["price"].is_f64());
    let inbound = &state.records("inbound-shipments").unwrap()[0];
    assert!(inbound["status"].is_string() && inbound["expected_date"].is_string());
    assert!(inbound["line_items"].is_array());
}

#[tokio::test]
async fn missing_auth_is_401_with_json_error() {
    let mock = mock(3).await;
    let api = Api::new(&mock);
    let cases = [
        api.http.get(api.url("/wms/orders")),
        api.http
            .get(api.url("/wms/orders"))
            .header("x-trackstar-api-key", "k"),
        api.http
            .get(api.url("/wms/orders"))
            .header("x-trackstar-access-token", "t"),
        api.http
            .get(api.url("/wms/orders"))
            .header("x-trackstar-api-key", "")
            .header("x-trackstar-access-token", "t"),
    ];
    for req in cases {
        let resp = req.send().await.unwrap();
        assert_eq!(resp.status(), 401);
        let body: Value = resp.json().await.unwrap();
        assert_eq!(body["error"], "unauthorized");
    }
    assert_eq!(mock.stats().by_status["401"], 4);
}

#[tokio::test]
async fn unsupported_resource_and_bad_parameters() {
    let mock = mock(3).await;
    let api = Api::new(&mock);
    let resp = api.wms("/wms/returns", "tok").send().await.unwrap();
    assert_eq!(resp.status(), 501);
    for bad in [
        "limit=abc",
        "page_token=%%%",
        "page_token=bm90LWEtdG9rZW4",
        "updated_date[gte]=yesterday",
    ] {
        let resp = api
            .wms(&format!("/wms/orders?{bad}"), "tok")
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status(), 400, "{bad}");
    }
    // Oversized limits are clamped, not refused.
    let resp = api
        .wms("/wms/orders?limit=5000", "tok")
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
}

#[tokio::test]
async fn link_flow() {
    let mock = mock(1).await;
    let api = Api::new(&mock);
    let post = |path: &str| {
        api.http
            .post(api.url(path))
            .header("x-trackstar-api-key", "key_test")
    };

    let token = json_ok(post("/link/token").send().await.unwrap()).await;
    assert!(token["link_token"].as_str().unwrap().starts_with("link_"));

    let exchanged = json_ok(
        post("/link/exchange")
            .json(&json!({"auth_code": "code_abc"}))
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert!(exchanged["access_token"]
        .as_str()
        .unwrap()
        .starts_with("at_"));
    assert!(exchanged["connection_id"]
        .as_str()
        .unwrap()
        .starts_with("conn_"));
    assert_eq!(exchanged["integration_name"], "mock_wms");
    let again = json_ok(
        post("/link/exchange")
            .json(&json!({"auth_code": "code_abc"}))
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(again, exchanged, "an exchange is repeatable");

    for bad in [
        json!({"auth_code": "nope"}),
        json!({"auth_code": "code_"}),
        json!({}),
    ] {
        let resp = post("/link/exchange").json(&bad).send().await.unwrap();
        assert_eq!(resp.status(), 400, "{bad}");
    }
    let resp = api.http.post(api.url("/link/token")).send().await.unwrap();
    assert_eq!(resp.status(), 401, "the link flow needs the API key");

    // The exchanged token works on the API.
    let access = exchanged["access_token"].as_str().unwrap();
    assert_eq!(
        api.wms("/wms/products", access)
            .send()
            .await
            .unwrap()
            .status(),
        200
    );
}

#[tokio::test]
async fn records_match_listing_after_mutations() {
    let mock = unlimited_mock(40).await;
    let api = Api::new(&mock);
    let applied = api
        .control_post("/_mock/mutate", json!({"count": 120}))
        .await;
    assert_eq!(applied["applied"], 120);
    assert_eq!(mock.stats().mutations, 120);
    for resource in ["orders", "products", "inventory", "inbound-shipments"] {
        let (listed, _) = api.list_all(resource, "limit=9", "tok").await;
        let truth = api.control_get(&format!("/_mock/records/{resource}")).await;
        assert_eq!(&Value::Array(listed), &truth["data"], "{resource}");
    }
}

#[tokio::test]
async fn same_seed_same_data() {
    let (a, b) = (mock(10).await, mock(10).await);
    for res in ["orders", "products", "inventory", "inbound-shipments"] {
        let strip = |items: Vec<Value>| -> Vec<Value> {
            items
                .into_iter()
                .map(|mut i| {
                    // Dates are relative to each mock's start; everything else is seeded.
                    let obj = i.as_object_mut().unwrap();
                    obj.remove("created_date");
                    obj.remove("updated_date");
                    obj.remove("expected_date");
                    if let Some(ships) = obj.get_mut("shipments").and_then(Value::as_array_mut) {
                        ships.iter_mut().for_each(|s| {
                            s.as_object_mut().unwrap().remove("shipped_date");
                        });
                    }
                    i
                })
                .collect()
        };
        let mut xa = strip(a.state().records(res).unwrap());
        let mut xb = strip(b.state().records(res).unwrap());
        xa.sort_by_key(|v| v["id"].as_str().unwrap().to_owned());
        xb.sort_by_key(|v| v["id"].as_str().unwrap().to_owned());
        assert_eq!(xa, xb, "{res}");
    }
}
