-- Connections: one tenant's link to one provider account. Secrets are sealed by the
-- application (AEAD) before they reach these columns; the store never sees plaintext.

CREATE TABLE connections (
    id               TEXT PRIMARY KEY,
    tenant_id        TEXT NOT NULL REFERENCES tenants(id),
    provider         TEXT NOT NULL,
    name             TEXT NOT NULL,
    status           TEXT NOT NULL,
    config           TEXT NOT NULL,
    credentials      {{bytes}},
    webhook_secrets  {{bytes}},
    created_at       BIGINT NOT NULL,
    updated_at       BIGINT NOT NULL,
    last_webhook_at  BIGINT,
    UNIQUE (tenant_id, name)
);
CREATE INDEX connections_tenant ON connections (tenant_id, id);

CREATE TABLE connection_status_history (
    id             {{serial_pk}},
    connection_id  TEXT NOT NULL,
    from_status    TEXT,
    to_status      TEXT NOT NULL,
    reason         TEXT,
    at             BIGINT NOT NULL
);
CREATE INDEX connection_status_history_conn ON connection_status_history (connection_id, id);
