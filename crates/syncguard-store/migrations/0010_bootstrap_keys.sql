-- Bootstrap keys are marked, so a start can find them: `env` for a key installed from
-- SYNCGUARD_BOOTSTRAP_KEY (revoked when that variable changes or is removed), `generated` for
-- the key made for an empty store (kept until revoked through the API). A bootstrap key made
-- before this migration could be either; it is marked `generated`, which never revokes it on its
-- own: locking an operator out of an upgraded node is worse than keeping a key they chose.
ALTER TABLE api_keys ADD COLUMN bootstrap TEXT;
UPDATE api_keys SET bootstrap = 'generated' WHERE id = 'key_bootstrap';
