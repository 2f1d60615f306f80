-- The local mirror of provider objects and the append-only change feed.

CREATE TABLE records (
    connection_id      TEXT NOT NULL,
    resource           TEXT NOT NULL,
    external_id        TEXT NOT NULL,
    tenant_id          TEXT NOT NULL,
    data               TEXT NOT NULL,
    hash               TEXT NOT NULL,
    remote_updated_at  BIGINT,
    synced_at          BIGINT NOT NULL,
    deleted            BOOLEAN NOT NULL DEFAULT FALSE,
    PRIMARY KEY (connection_id, resource, external_id)
);

CREATE TABLE changes (
    seq            {{serial_pk}},
    tenant_id      TEXT NOT NULL,
    connection_id  TEXT NOT NULL,
    resource       TEXT NOT NULL,
    external_id    TEXT NOT NULL,
    kind           TEXT NOT NULL,
    hash           TEXT,
    source         TEXT NOT NULL,
    at             BIGINT NOT NULL
);
CREATE INDEX changes_tenant ON changes (tenant_id, seq);
CREATE INDEX changes_connection ON changes (connection_id, seq);
