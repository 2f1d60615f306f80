-- Inbound webhook events (SPEC §3.2). A delivery is acknowledged only after its row here, its
-- content-key claim and its processing job are committed in one transaction.

CREATE TABLE inbound_events (
    id              TEXT PRIMARY KEY,
    tenant_id       TEXT NOT NULL,
    connection_id   TEXT NOT NULL,
    provider        TEXT NOT NULL,
    delivery_id     TEXT,
    event_type      TEXT,
    content_key     TEXT NOT NULL,
    -- received, processed, failed, dead, duplicate
    status          TEXT NOT NULL,
    duplicate_of    TEXT,
    signature       TEXT NOT NULL,
    correlation_id  TEXT NOT NULL,
    -- JSON array of [name, value] pairs, credentials removed.
    headers         TEXT NOT NULL,
    -- The raw bytes exactly as received.
    body            {{bytes}} NOT NULL,
    attempts        BIGINT NOT NULL DEFAULT 0,
    note            TEXT,
    received_at     BIGINT NOT NULL,
    processed_at    BIGINT,
    updated_at      BIGINT NOT NULL
);
-- Delivery-id deduplication: one event per (connection, delivery id). Duplicates are stored as
-- rows of their own and stay outside the constraint.
CREATE UNIQUE INDEX inbound_events_delivery ON inbound_events (connection_id, delivery_id)
    WHERE delivery_id IS NOT NULL AND status <> 'duplicate';
CREATE INDEX inbound_events_tenant ON inbound_events (tenant_id, id);
CREATE INDEX inbound_events_connection ON inbound_events (connection_id, id);

-- Content-key deduplication: the first event seen with a key owns it for the window (24 h);
--sqlite: -- a claim older than the window is taken over by the next event with that key. Rows are small
--sqlite: -- and looked up by key only, so the key is the table's own B-tree (one write per claim).
--postgres: -- a claim older than the window is taken over by the next event with that key.
CREATE TABLE inbound_content_keys (
    content_key  TEXT PRIMARY KEY,
    event_id     TEXT NOT NULL,
    seen_at      BIGINT NOT NULL
){{without_rowid}};
CREATE INDEX inbound_content_keys_seen ON inbound_content_keys (seen_at);

-- Every job enqueued for or run on an event: the first one, replays, dead-letter replays.
CREATE TABLE inbound_event_jobs (
    event_id  TEXT NOT NULL,
    job_id    BIGINT NOT NULL,
    PRIMARY KEY (event_id, job_id)
){{without_rowid}};
