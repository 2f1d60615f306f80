-- The publish path (SPEC §3.5): desired state, snapshots (content-addressed JSON plus one row
-- per captured state, with its RFC 6902 patch from the object's previous snapshot), drift
-- findings, and what the integrity audit has found.

CREATE TABLE desired_state (
    connection_id        TEXT NOT NULL,
    resource             TEXT NOT NULL,
    external_id          TEXT NOT NULL,
    tenant_id            TEXT NOT NULL,
    data                 TEXT NOT NULL,
    hash                 TEXT NOT NULL,
    last_published_hash  TEXT,
    -- A hash sent to the provider whose outcome was never recorded (the worker may have died
    -- after the provider applied it): the next attempt reads the remote object first.
    attempted_hash       TEXT,
    last_error           TEXT,
    updated_at           BIGINT NOT NULL,
    published_at         BIGINT,
    -- Reconciliation takes the least recently reconciled objects first, so a run that yields
    -- to the rate limiter resumes where it stopped.
    reconciled_at        BIGINT NOT NULL DEFAULT 0,
    PRIMARY KEY (connection_id, resource, external_id)
);
CREATE INDEX desired_state_reconcile ON desired_state (connection_id, reconciled_at);

CREATE TABLE snapshot_data (
    tenant_id  TEXT NOT NULL,
    hash       TEXT NOT NULL,
    data       TEXT NOT NULL,
    PRIMARY KEY (tenant_id, hash)
);

CREATE TABLE snapshots (
    id             {{serial_pk}},
    tenant_id      TEXT NOT NULL,
    connection_id  TEXT NOT NULL,
    resource       TEXT NOT NULL,
    external_id    TEXT NOT NULL,
    hash           TEXT NOT NULL,
    source         TEXT NOT NULL,
    previous_id    BIGINT,
    patch          TEXT NOT NULL,
    created_at     BIGINT NOT NULL
);
CREATE INDEX snapshots_object ON snapshots (connection_id, resource, external_id, id);
CREATE INDEX snapshots_tenant ON snapshots (tenant_id, id);

CREATE TABLE drift_events (
    id              {{serial_pk}},
    tenant_id       TEXT NOT NULL,
    connection_id   TEXT NOT NULL,
    resource        TEXT NOT NULL,
    external_id     TEXT NOT NULL,
    classification  TEXT NOT NULL,
    local_hash      TEXT,
    remote_hash     TEXT,
    action          TEXT NOT NULL,
    detected_at     BIGINT NOT NULL
);
CREATE INDEX drift_events_object ON drift_events (connection_id, resource, external_id, id);
CREATE INDEX drift_events_tenant ON drift_events (tenant_id, id);

-- One row per stored object whose content no longer matches its hash; a later audit that
-- finds it sound again removes it. Health reads the count.
CREATE TABLE integrity_mismatches (
    kind         TEXT NOT NULL,
    object_key   TEXT NOT NULL,
    tenant_id    TEXT,
    stored_hash  TEXT NOT NULL,
    actual_hash  TEXT NOT NULL,
    detected_at  BIGINT NOT NULL,
    PRIMARY KEY (kind, object_key)
);

-- Where each kind's rolling audit window stands, so that runs cover every row in turn.
CREATE TABLE integrity_audit_state (
    kind         TEXT PRIMARY KEY,
    cursor       TEXT,
    last_run_at  BIGINT NOT NULL,
    checked      BIGINT NOT NULL
);
