-- Sync (SPEC §3.4, §3.7): one checkpoint per (connection, resource), and per-minute counts of
-- the provider calls sync makes, which health turns into error rates and burn-rate alerts.
-- Times are BIGINT milliseconds since the Unix epoch.

CREATE TABLE sync_checkpoints (
    connection_id         TEXT NOT NULL,
    resource              TEXT NOT NULL,
    tenant_id             TEXT NOT NULL,
    -- The true high-water mark: the largest remote updated-at committed. Never lowered; the
    -- overlap for clock skew is subtracted from the query value only.
    cursor                BIGINT,
    last_sync_at          BIGINT,
    last_success_at       BIGINT,
    last_error            TEXT,
    backfill_done         BOOLEAN NOT NULL DEFAULT FALSE,
    -- When the last completed run started: objects changed while it listed may have been
    -- passed over, so the next run queries from no later than this.
    last_run_started_at   BIGINT,
    -- The run in progress (NULL between runs). Committed with every page, so a crash resumes
    -- at the page after the last one committed.
    run_started_at        BIGINT,
    run_since             BIGINT,
    run_backfill          BOOLEAN NOT NULL DEFAULT FALSE,
    run_full              BOOLEAN NOT NULL DEFAULT FALSE,
    run_page_token        TEXT,
    run_pages             BIGINT NOT NULL DEFAULT 0,
    run_items             BIGINT NOT NULL DEFAULT 0,
    run_missing_cursor    BIGINT NOT NULL DEFAULT 0,
    -- Over every run.
    pages_total           BIGINT NOT NULL DEFAULT 0,
    items_total           BIGINT NOT NULL DEFAULT 0,
    missing_cursor_total  BIGINT NOT NULL DEFAULT 0,
    updated_at            BIGINT NOT NULL,
    PRIMARY KEY (connection_id, resource)
);
CREATE INDEX sync_checkpoints_tenant ON sync_checkpoints (tenant_id, connection_id);

CREATE TABLE sync_outcomes (
    connection_id  TEXT NOT NULL,
    -- Start of the minute the calls finished in.
    minute         BIGINT NOT NULL,
    tenant_id      TEXT NOT NULL,
    ok             BIGINT NOT NULL DEFAULT 0,
    failed         BIGINT NOT NULL DEFAULT 0,
    PRIMARY KEY (connection_id, minute)
);
CREATE INDEX sync_outcomes_minute ON sync_outcomes (minute);
