-- Tenancy, access, audit, API idempotency, the durable job queue and periodic slots.
-- Times are BIGINT milliseconds since the Unix epoch, the same on both stores.

CREATE TABLE tenants (
    id          TEXT PRIMARY KEY,
    name        TEXT NOT NULL UNIQUE,
    created_at  BIGINT NOT NULL
);

CREATE TABLE api_keys (
    id           TEXT PRIMARY KEY,
    tenant_id    TEXT REFERENCES tenants(id),
    role         TEXT NOT NULL,
    name         TEXT NOT NULL,
    key_hash     TEXT NOT NULL UNIQUE,
    key_last4    TEXT NOT NULL,
    connections  TEXT,
    created_at   BIGINT NOT NULL,
    revoked_at   BIGINT
);
CREATE INDEX api_keys_tenant ON api_keys (tenant_id, id);

CREATE TABLE audit_log (
    id          {{serial_pk}},
    tenant_id   TEXT,
    actor       TEXT NOT NULL,
    action      TEXT NOT NULL,
    target      TEXT,
    params      TEXT NOT NULL,
    request_id  TEXT,
    at          BIGINT NOT NULL
);
CREATE INDEX audit_log_tenant ON audit_log (tenant_id, id);

CREATE TABLE idempotency_keys (
    scope         TEXT NOT NULL,
    key           TEXT NOT NULL,
    request_hash  TEXT NOT NULL,
    state         TEXT NOT NULL,
    status        BIGINT,
    content_type  TEXT,
    body          {{bytes}},
    created_at    BIGINT NOT NULL,
    locked_until  BIGINT NOT NULL,
    PRIMARY KEY (scope, key)
);
CREATE INDEX idempotency_keys_created ON idempotency_keys (created_at);

CREATE TABLE jobs (
    id               {{serial_pk}},
    tenant_id        TEXT,
    connection_id    TEXT,
    kind             TEXT NOT NULL,
    payload          TEXT NOT NULL,
    pending_payload  TEXT,
    state            TEXT NOT NULL,
    priority         BIGINT NOT NULL DEFAULT 0,
    attempts         BIGINT NOT NULL DEFAULT 0,
    max_attempts     BIGINT NOT NULL,
    run_at           BIGINT NOT NULL,
    created_at       BIGINT NOT NULL,
    updated_at       BIGINT NOT NULL,
    started_at       BIGINT,
    finished_at      BIGINT,
    locked_by        TEXT,
    lease_until      BIGINT,
    unique_key       TEXT,
    debounce_ms      BIGINT,
    error_class      TEXT,
    last_error       TEXT,
    reviewed         BOOLEAN NOT NULL DEFAULT FALSE,
    replayed_from    BIGINT,
    replayed_as      BIGINT,
    correlation_id   TEXT
);
CREATE UNIQUE INDEX jobs_unique_active ON jobs (unique_key)
    WHERE unique_key IS NOT NULL AND state IN ('available', 'running', 'retryable');
CREATE INDEX jobs_fetch ON jobs (priority, run_at, id) WHERE state IN ('available', 'retryable');
CREATE INDEX jobs_lease ON jobs (lease_until) WHERE state = 'running';
CREATE INDEX jobs_state ON jobs (state, id);
CREATE INDEX jobs_tenant ON jobs (tenant_id, id);

CREATE TABLE periodic_runs (
    name        TEXT NOT NULL,
    slot        BIGINT NOT NULL,
    job_id      BIGINT,
    created_at  BIGINT NOT NULL,
    PRIMARY KEY (name, slot)
);
