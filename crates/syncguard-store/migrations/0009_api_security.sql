-- Audit entries name the connection they concern, so that a connection-scoped key sees only
-- the entries of its connections.
ALTER TABLE audit_log ADD COLUMN connection_id TEXT;
--sqlite: UPDATE audit_log SET connection_id = CASE
--sqlite:         WHEN instr(target, ':') > 0 THEN substr(target, 1, instr(target, ':') - 1)
--sqlite:         ELSE target END
--postgres: UPDATE audit_log SET connection_id = split_part(target, ':', 1)
    WHERE target LIKE 'con\_%' ESCAPE '\';
CREATE INDEX audit_log_connection ON audit_log (tenant_id, connection_id, id);

-- Stored responses are now bound to the authenticated key and sealed; earlier ones were bound
-- to the Authorization header and kept in clear (a new API key among them), so they go.
DELETE FROM idempotency_keys;
