use reqwest::Method;
use serde_json::{json, Value};

use crate::helpers::{json_ok, mock, unlimited_mock, Api};

fn item(quantity: u64) -> Value {
    json!({
        "product": {"title": "Classic Mug", "aspects": {"Color": ["Blue"]}},
        "condition": "NEW",
        "availability": {"shipToLocationAvailability": {"quantity": quantity}},
    })
}

#[tokio::test]
async fn oauth_token_then_put_and_get_an_item() {
    let mock = unlimited_mock(1).await;
    let api = Api::new(&mock);
    let resp = api
        .http
        .post(api.url("/identity/v1/oauth2/token"))
        .basic_auth("client-id", Some("client-secret"))
        .form(&[("grant_type", "client_credentials")])
        .send()
        .await
        .unwrap();
    let token = json_ok(resp).await;
    assert_eq!(token["expires_in"], 7200);
    assert_eq!(token["token_type"], "Application Access Token");
    let token = token["access_token"].as_str().unwrap();

    let put = api
        .item(Method::PUT, "MUG-1", token)
        .json(&item(5))
        .send()
        .await
        .unwrap();
    assert_eq!(put.status(), 201);
    assert!(put.headers().contains_key("x-rate-limit-remaining"));
    let put = api
        .item(Method::PUT, "MUG-1", token)
        .json(&item(6))
        .send()
        .await
        .unwrap();
    assert_eq!(put.status(), 204);

    let got = json_ok(api.item(Method::GET, "MUG-1", token).send().await.unwrap()).await;
    assert_eq!(got["sku"], "MUG-1");
    assert_eq!(
        got["availability"]["shipToLocationAvailability"]["quantity"],
        6
    );
    assert_eq!(mock.state().records("inventory_item").unwrap(), vec![got]);

    let missing = api.item(Method::GET, "NOPE", token).send().await.unwrap();
    assert_eq!(missing.status(), 404);
    let body: Value = missing.json().await.unwrap();
    assert_eq!(body["errors"][0]["errorId"], 25710);
    assert_eq!(body["errors"][0]["domain"], "API_INVENTORY");
    assert_eq!(body["errors"][0]["category"], "REQUEST");

    for bad in [json!({"condition": "NEW"}), json!([1, 2]), json!("x")] {
        let resp = api
            .item(Method::PUT, "MUG-2", token)
            .json(&bad)
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status(), 400, "{bad}");
        let body: Value = resp.json().await.unwrap();
        assert!(body["errors"][0]["errorId"].is_u64());
    }

    let deleted = api
        .item(Method::DELETE, "MUG-1", token)
        .send()
        .await
        .unwrap();
    assert_eq!(deleted.status(), 204);
    assert_eq!(
        api.item(Method::DELETE, "MUG-1", token)
            .send()
            .await
            .unwrap()
            .status(),
        404
    );
    let stats = mock.stats();
    assert_eq!((stats.writes_applied, stats.duplicate_writes), (3, 0));
}

#[tokio::test]
async fn oauth_refusals_and_token_expiry() {
    let mock = mock(1).await;
    let api = Api::new(&mock);
    let token_url = api.url("/identity/v1/oauth2/token");

    let no_client = api
        .http
        .post(&token_url)
        .form(&[("grant_type", "client_credentials")])
        .send()
        .await
        .unwrap();
    assert_eq!(no_client.status(), 401);
    assert_eq!(
        no_client.json::<Value>().await.unwrap()["error"],
        "invalid_client"
    );
    let bad_grant = api
        .http
        .post(&token_url)
        .basic_auth("a", Some("b"))
        .form(&[("grant_type", "password")])
        .send()
        .await
        .unwrap();
    assert_eq!(bad_grant.status(), 400);
    let refresh = api
        .http
        .post(&token_url)
        .basic_auth("a", Some("b"))
        .form(&[
            ("grant_type", "refresh_token"),
            ("refresh_token", "v^1.1#r^1#anything"),
        ])
        .send()
        .await
        .unwrap();
    assert_eq!(refresh.status(), 200);

    let unauth = api
        .http
        .get(api.url("/sell/inventory/v1/inventory_item"))
        .send()
        .await
        .unwrap();
    assert_eq!(unauth.status(), 401);
    assert_eq!(
        unauth.json::<Value>().await.unwrap()["errors"][0]["errorId"],
        1001
    );

    let token = api.ebay_token().await;
    assert_eq!(
        api.item(Method::GET, "X", &token)
            .send()
            .await
            .unwrap()
            .status(),
        404
    );
    let expired = api.control_post("/_mock/tokens/expire", json!({})).await;
    assert_eq!(expired["expired"], 2);
    assert_eq!(
        api.item(Method::GET, "X", &token)
            .send()
            .await
            .unwrap()
            .status(),
        401
    );
    let fresh = api.ebay_token().await;
    assert_eq!(
        api.item(Method::GET, "X", &fresh)
            .send()
            .await
            .unwrap()
            .status(),
        404
    );
}

#[tokio::test]
async fn repeated_writes_count_as_duplicates_and_apply_once() {
    let mock = mock(1).await;
    let api = Api::new(&mock);
    let token = api.ebay_token().await;
    let put = |key: &str, quantity: u64| {
        api.item(Method::PUT, "SKU-9", &token)
            .header("Idempotency-Key", key)
            .json(&item(quantity))
    };

    assert_eq!(put("k1", 1).send().await.unwrap().status(), 201);
    // Same key, even with another body: the stored answer, nothing applied.
    assert_eq!(put("k1", 99).send().await.unwrap().status(), 201);
    assert_eq!(
        mock.state().inventory_item("SKU-9").unwrap()["availability"]["shipToLocationAvailability"]
            ["quantity"],
        1
    );
    let stats = mock.stats();
    assert_eq!((stats.writes_applied, stats.duplicate_writes), (1, 1));

    // eBay's own header works the same way, for deletes too.
    let delete = || {
        api.item(Method::DELETE, "SKU-9", &token)
            .header("X-EBAY-C-REQUEST-ID", "r1")
    };
    assert_eq!(delete().send().await.unwrap().status(), 204);
    assert_eq!(delete().send().await.unwrap().status(), 204);

    // A byte-identical PUT of the current state, without any key.
    let body = serde_json::to_vec(&item(3)).unwrap();
    for expected in [201, 204] {
        let resp = api
            .item(Method::PUT, "SKU-9", &token)
            .header("content-type", "application/json")
            .body(body.clone())
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status(), expected);
    }
    let stats = mock.stats();
    assert_eq!((stats.writes_applied, stats.duplicate_writes), (3, 3));
}

#[tokio::test]
async fn list_pages_with_limit_and_offset() {
    let mock = unlimited_mock(1).await;
    let api = Api::new(&mock);
    let token = api.ebay_token().await;
    for i in 0..7 {
        let resp = api
            .item(Method::PUT, &format!("SKU-{i}"), &token)
            .json(&item(i))
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status(), 201);
    }
    let list = |q: &str| {
        api.http
            .get(api.url(&format!("/sell/inventory/v1/inventory_item{q}")))
            .bearer_auth(&token)
            .send()
    };
    let page = json_ok(list("?limit=3&offset=3").await.unwrap()).await;
    assert_eq!(
        (
            page["total"].as_u64(),
            page["size"].as_u64(),
            page["offset"].as_u64()
        ),
        (Some(7), Some(3), Some(3))
    );
    let skus: Vec<_> = page["inventoryItems"]
        .as_array()
        .unwrap()
        .iter()
        .map(|i| i["sku"].as_str().unwrap())
        .collect();
    assert_eq!(skus, ["SKU-3", "SKU-4", "SKU-5"]);
    let next = page["next"].as_str().unwrap();
    assert!(next.starts_with(&api.base) && next.ends_with("limit=3&offset=6"));

    let last = json_ok(api.http.get(next).bearer_auth(&token).send().await.unwrap()).await;
    assert_eq!(last["size"], 1);
    assert!(last.get("next").is_none());

    let all = json_ok(list("").await.unwrap()).await;
    assert_eq!(all["limit"], 25);
    assert_eq!(all["inventoryItems"].as_array().unwrap().len(), 7);
    assert_eq!(list("?offset=-1").await.unwrap().status(), 400);
}
