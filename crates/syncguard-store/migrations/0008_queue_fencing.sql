-- Fencing: each claim writes a fresh lease token; every write made for a job (heartbeat,
-- completion, handler writes) is conditional on it, so a run that lost its lease cannot commit.
ALTER TABLE jobs ADD COLUMN lease_id BIGINT;

-- Fair claiming: the due jobs of one connection in claim order (one index probe per
-- connection), and the running jobs per connection for the per-connection cap.
CREATE INDEX jobs_fetch_by_connection ON jobs (connection_id, priority, run_at, id) WHERE state IN ('available', 'retryable');
CREATE INDEX jobs_running_by_connection ON jobs (connection_id) WHERE state = 'running';
