use reqwest::{RequestBuilder, Response};
use serde_json::Value;
use syncguard_mock::{spawn, MockConfig, MockHandle};

/// A mock with `records` objects per resource and the default limits.
pub async fn mock(records: usize) -> MockHandle {
    mock_with(MockConfig {
        records,
        ..MockConfig::default()
    })
    .await
}

pub async fn mock_with(cfg: MockConfig) -> MockHandle {
    spawn(cfg).await.expect("mock starts")
}

/// A mock without a rate limit, for tests that make many calls and are not about limiting.
pub async fn unlimited_mock(records: usize) -> MockHandle {
    mock_with(MockConfig {
        records,
        rate_limit_rps: 0.0,
        ..MockConfig::default()
    })
    .await
}

/// A client for one mock, with helpers for each API's auth.
pub struct Api {
    pub base: String,
    pub http: reqwest::Client,
}

impl Api {
    pub fn new(mock: &MockHandle) -> Self {
        Self {
            base: mock.base_url.clone(),
            http: reqwest::Client::new(),
        }
    }

    pub fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base)
    }

    /// A Trackstar call with a key and the given access token.
    pub fn wms(&self, path: &str, token: &str) -> RequestBuilder {
        self.http
            .get(self.url(path))
            .header("x-trackstar-api-key", "key_test")
            .header("x-trackstar-access-token", token)
    }

    pub async fn control_post(&self, path: &str, body: Value) -> Value {
        let resp = self
            .http
            .post(self.url(path))
            .json(&body)
            .send()
            .await
            .unwrap();
        assert!(resp.status().is_success(), "{path}: {}", resp.status());
        resp.json().await.unwrap()
    }

    pub async fn control_get(&self, path: &str) -> Value {
        self.http
            .get(self.url(path))
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap()
    }

    /// Follows `next_token` to the end; returns every item and the number of pages.
    pub async fn list_all(&self, resource: &str, query: &str, token: &str) -> (Vec<Value>, usize) {
        let mut items = Vec::new();
        let mut next: Option<String> = None;
        let mut pages = 0;
        loop {
            let mut path = format!("/wms/{resource}?{query}");
            if let Some(t) = &next {
                path.push_str(&format!("&page_token={t}"));
            }
            let page = json_ok(self.wms(&path, token).send().await.unwrap()).await;
            pages += 1;
            items.extend(page["data"].as_array().unwrap().iter().cloned());
            match page["next_token"].as_str() {
                Some(t) => next = Some(t.to_owned()),
                None => return (items, pages),
            }
        }
    }

    /// A fresh eBay access token.
    pub async fn ebay_token(&self) -> String {
        let resp = self
            .http
            .post(self.url("/identity/v1/oauth2/token"))
            .basic_auth("client-id", Some("client-secret"))
            .form(&[
                ("grant_type", "client_credentials"),
                ("scope", "https://api.ebay.com/oauth/api_scope"),
            ])
            .send()
            .await
            .unwrap();
        json_ok(resp).await["access_token"]
            .as_str()
            .unwrap()
            .to_owned()
    }

    pub fn item(&self, method: reqwest::Method, sku: &str, token: &str) -> RequestBuilder {
        self.http
            .request(
                method,
                self.url(&format!("/sell/inventory/v1/inventory_item/{sku}")),
            )
            .bearer_auth(token)
    }
}

pub async fn json_ok(resp: Response) -> Value {
    let status = resp.status();
    let body: Value = resp.json().await.unwrap();
    assert!(status.is_success(), "{status}: {body}");
    body
}

pub fn ids(items: &[Value]) -> Vec<String> {
    items
        .iter()
        .map(|i| i["id"].as_str().unwrap().to_owned())
        .collect()
}

/// Polls `done` for up to 10 s; for counters that settle just after the event a test awaited.
pub async fn eventually(mut done: impl FnMut() -> bool) {
    let deadline = tokio::time::Instant::now() + std::time::Duration::from_secs(10);
    while !done() {
        assert!(
            tokio::time::Instant::now() < deadline,
            "condition not met within 10 s"
        );
        tokio::time::sleep(std::time::Duration::from_millis(10)).await;
    }
}
