-- Provider runtime state shared by every node (SPEC §2): circuit breakers and rate limiters.
-- The state machines live in syncguard-core; rows hold their JSON, plus the few fields the API
-- lists and filters on, kept beside it so listing never parses JSON.

CREATE TABLE circuits (
    key            TEXT PRIMARY KEY,           -- `{connection_id}:{provider}`
    tenant_id      TEXT NOT NULL,
    connection_id  TEXT NOT NULL,
    provider       TEXT NOT NULL,
    state          TEXT NOT NULL,              -- closed | open | half_open
    forced         TEXT,                       -- open | closed | NULL (auto)
    opened_at      BIGINT,
    machine        TEXT NOT NULL,              -- syncguard_core::breaker::BreakerState
    updated_at     BIGINT NOT NULL
);
CREATE INDEX circuits_connection ON circuits (connection_id);
CREATE INDEX circuits_provider_state ON circuits (provider, state);

-- One row per credential (the key is a hash, never the credential). Only PostgreSQL
-- deployments use it: an embedded SQLite node keeps its limiters in memory.
CREATE TABLE rate_limiters (
    key         TEXT PRIMARY KEY,
    provider    TEXT NOT NULL,
    state       TEXT NOT NULL,                 -- syncguard_core::limiter::LimiterState
    updated_at  BIGINT NOT NULL
);
