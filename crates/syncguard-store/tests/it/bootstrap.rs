//! Bootstrap platform keys across starts, and keys that fail closed.

use crate::T0;
use syncguard_core::role::Role;
use syncguard_store::page::PageRequest;
use syncguard_store::tenancy::{BootstrapInstall, BootstrapSource, NewApiKey};
use syncguard_store::testkit::TestDb;
use syncguard_store::Scope;

crate::on_both_stores!(
    a_revoked_bootstrap_key_stays_revoked_across_starts,
    a_new_bootstrap_key_revokes_the_old_one,
    removing_the_variable_revokes_only_env_keys,
    a_key_without_tenant_sees_nothing,
);

const K1: &str = "sg_live_bootstrap_one_0000000000000";
const K2: &str = "sg_live_bootstrap_two_0000000000000";

fn page() -> PageRequest {
    PageRequest {
        after: None,
        limit: 100,
    }
}

async fn a_revoked_bootstrap_key_stays_revoked_across_starts(db: TestDb) {
    let s = &db.store;
    assert_eq!(
        s.upsert_bootstrap_key(K1, T0).await.unwrap(),
        BootstrapInstall::Installed
    );
    let key = s.authenticate(K1).await.unwrap().expect("live");
    assert_eq!(
        s.upsert_bootstrap_key(K1, T0 + 1).await.unwrap(),
        BootstrapInstall::Kept
    );
    s.revoke_api_key(&Scope::All, &key.id, T0 + 2)
        .await
        .unwrap();
    // The next start names the same key: it stays revoked.
    assert_eq!(
        s.upsert_bootstrap_key(K1, T0 + 3).await.unwrap(),
        BootstrapInstall::Revoked
    );
    assert!(s.authenticate(K1).await.unwrap().is_none());
    let all = s.list_api_keys(&Scope::All, &page()).await.unwrap().items;
    assert_eq!(all.len(), 1);
    assert_eq!(all[0].revoked_at, Some(T0 + 2));
}

async fn a_new_bootstrap_key_revokes_the_old_one(db: TestDb) {
    let s = &db.store;
    s.install_bootstrap_key(K1, BootstrapSource::Generated, T0)
        .await
        .unwrap();
    s.upsert_bootstrap_key(K2, T0 + 1).await.unwrap();
    assert!(
        s.authenticate(K1).await.unwrap().is_none(),
        "old key revoked"
    );
    let k2 = s.authenticate(K2).await.unwrap().expect("new key live");
    assert_eq!(k2.role, Role::Platform);
    // Back to the first one: it was revoked and stays so; the second one stays live.
    assert_eq!(
        s.upsert_bootstrap_key(K1, T0 + 2).await.unwrap(),
        BootstrapInstall::Revoked
    );
    assert!(s.authenticate(K2).await.unwrap().is_some());
}

async fn removing_the_variable_revokes_only_env_keys(db: TestDb) {
    let s = &db.store;
    s.install_bootstrap_key(K1, BootstrapSource::Generated, T0)
        .await
        .unwrap();
    assert_eq!(s.revoke_env_bootstrap_keys(T0 + 1).await.unwrap(), 0);
    assert!(
        s.authenticate(K1).await.unwrap().is_some(),
        "generated key kept"
    );
    s.upsert_bootstrap_key(K2, T0 + 2).await.unwrap();
    // An ordinary platform key is no bootstrap key: it survives both.
    let other = s
        .create_api_key(
            NewApiKey {
                id: None,
                tenant_id: None,
                role: Role::Platform,
                name: "ops".into(),
                connections: None,
            },
            "sg_live_ordinary_platform_0000000000",
            T0,
        )
        .await
        .unwrap();
    assert_eq!(s.revoke_env_bootstrap_keys(T0 + 3).await.unwrap(), 1);
    assert!(
        s.authenticate(K2).await.unwrap().is_none(),
        "env key revoked"
    );
    assert_eq!(s.revoke_env_bootstrap_keys(T0 + 4).await.unwrap(), 0);
    let ops = s
        .authenticate("sg_live_ordinary_platform_0000000000")
        .await
        .unwrap()
        .expect("ordinary key live");
    assert_eq!(ops.id, other.id);
}

async fn a_key_without_tenant_sees_nothing(db: TestDb) {
    let s = &db.store;
    let tenant = s.create_tenant("acme", T0).await.unwrap();
    let clear = "sg_live_orphan_admin_key_000000000000";
    s.create_api_key(
        NewApiKey {
            id: None,
            tenant_id: None,
            role: Role::Admin,
            name: "orphan".into(),
            connections: None,
        },
        clear,
        T0,
    )
    .await
    .unwrap();
    let key = s.authenticate(clear).await.unwrap().expect("live");
    let scope = key.scope();
    assert_eq!(scope, Scope::Nothing);
    assert!(s.get_tenant(&scope, &tenant.id).await.unwrap().is_none());
    assert!(s
        .list_tenants(&scope, &page())
        .await
        .unwrap()
        .items
        .is_empty());
    assert!(s
        .list_api_keys(&scope, &page())
        .await
        .unwrap()
        .items
        .is_empty());
    assert_eq!(
        s.list_tenants(&Scope::All, &page())
            .await
            .unwrap()
            .items
            .len(),
        1
    );
}
