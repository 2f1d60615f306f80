-- Due jobs that belong to no connection, in claim order. The fair claim reads them as one group
-- (`connection_id IS NULL ORDER BY priority, run_at, id`); PostgreSQL does not take `IS NULL` as
-- an equality that fixes the order of `jobs_fetch_by_connection`, so without this index every
-- claim read and sorted all such due jobs, and a deep backlog drained in quadratic time.
CREATE INDEX jobs_fetch_unconnected ON jobs (priority, run_at, id) WHERE state IN ('available', 'retryable') AND connection_id IS NULL;
