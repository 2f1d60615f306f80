//! Snapshots: one per published state, deduplicated by hash, with patches and diffs.

use super::*;
use syncguard_store::Backend;

crate::on_both_stores!(snapshots_keep_each_state_with_its_patch_and_diff_any_two);

async fn snapshots_keep_each_state_with_its_patch_and_diff_any_two(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    let mock = ebay_mock().await;
    let (conn, keys) = ebay_connection(&app, &mock, json!({})).await;
    let v1 = item("Mug", 1);
    let v2 = item("Mug", 2);
    for body in [&v1, &v2, &v1] {
        put_desired(&app.url, &keys.operator, &conn, "SNAP-1", body).await;
        published(&app.url, &keys.viewer, &conn, "SNAP-1", &hash_of(body)).await;
    }
    let list_path = format!("/v1/snapshots?connection_id={conn}");
    let (s, list) = app.get(&list_path, &keys.viewer).await;
    assert_eq!(s, 200, "{list}");
    let items = list["data"].as_array().unwrap().clone();
    assert_eq!(
        items.len(),
        3,
        "a return to an earlier state is a new snapshot: {list}"
    );
    let (third, second, first) = (&items[0], &items[1], &items[2]);
    for field in [
        "id",
        "connection_id",
        "resource",
        "external_id",
        "hash",
        "source",
        "created_at",
    ] {
        assert!(first.get(field).is_some(), "{field} in {first}");
    }
    assert_eq!(first["hash"], hash_of(&v1));
    assert_eq!(second["hash"], hash_of(&v2));
    assert_eq!(first["hash"], third["hash"]);
    assert_eq!(first["source"], "publish");
    // Each snapshot carries its state and the patch from the one before.
    let (s, detail) = app
        .get(&format!("/v1/snapshots/{}", second["id"]), &keys.viewer)
        .await;
    assert_eq!(s, 200, "{detail}");
    assert_eq!(detail["data"], v2);
    assert_eq!(detail["previous_id"], first["id"]);
    assert_eq!(
        detail["patch"],
        json!([{"op": "replace", "path": "/availability/shipToLocationAvailability/quantity", "value": 2}])
    );
    // Capturing on demand a state already captured adds nothing.
    let (s, manual) = app
        .post(
            "/v1/snapshots",
            &keys.operator,
            json!({"connection_id": conn, "resource": "inventory_item", "external_id": "SNAP-1"}),
        )
        .await;
    assert_eq!(s, 201, "{manual}");
    assert_eq!(manual["id"], third["id"], "deduplicated by hash");
    // A change behind our back, captured on demand: a new snapshot with its patch.
    let mut edited = v1.clone();
    edited["product"]["title"] = json!("Big mug");
    mock.state().set_inventory_item("SNAP-1", edited.clone());
    let (s, manual) = app
        .post(
            "/v1/snapshots",
            &keys.operator,
            json!({"connection_id": conn, "resource": "inventory_item", "external_id": "SNAP-1"}),
        )
        .await;
    assert_eq!(s, 201, "{manual}");
    assert_eq!(
        (manual["source"].as_str(), &manual["hash"]),
        (Some("manual"), &json!(hash_of(&edited)))
    );
    // Any two snapshots of the tenant diff.
    let (s, diff) = app
        .get(
            &format!(
                "/v1/snapshots/diff?from={}&to={}",
                second["id"], manual["id"]
            ),
            &keys.viewer,
        )
        .await;
    assert_eq!(s, 200, "{diff}");
    let mut doc = v2.clone();
    let patch: json_patch::Patch = serde_json::from_value(diff["patch"].clone()).unwrap();
    json_patch::patch(&mut doc, &patch).unwrap();
    assert_eq!(doc, edited);
    assert_eq!(diff["from_hash"], hash_of(&v2));
    // Other tenants see none of it.
    let (_, other) = app.tenant_with_key("other", "admin").await;
    assert_eq!(
        app.get(&format!("/v1/snapshots/{}", first["id"]), &other)
            .await
            .0,
        404
    );
    let (_, theirs) = app.get(&list_path, &other).await;
    assert_eq!(theirs["data"], json!([]));
    let diff_path = format!(
        "/v1/snapshots/diff?from={}&to={}",
        first["id"], second["id"]
    );
    assert_eq!(app.get(&diff_path, &other).await.0, 404);
    assert_eq!(app.get("/v1/snapshots/nope", &keys.viewer).await.0, 422);
    assert_eq!(
        app.post(
            "/v1/snapshots",
            &keys.viewer,
            json!({"connection_id": conn, "resource": "inventory_item", "external_id": "SNAP-1"})
        )
        .await
        .0,
        403
    );
    mock.shutdown().await;
    app.stop().await;
}
