-- The change feed (DESIGN.md §6). Every write that changes what a node serves adds a row to
-- `changes` in its own transaction, through the triggers below, and announces the row's version
-- with NOTIFY when it commits. Nodes apply the rows past the version they hold.
--
-- Versions come from the one row of `change_version`: its row lock, held until the writing
-- transaction ends, makes versions commit in order, so a node that has seen version N has seen
-- every version below it (a sequence would not: a lower value can commit after a higher one).

CREATE TABLE change_version (
    id      INTEGER PRIMARY KEY CHECK (id = 1),
    version BIGINT NOT NULL
);
INSERT INTO change_version (id, version) VALUES (1, 0);

CREATE TABLE changes (
    version    BIGINT PRIMARY KEY,
    -- auth_server, scope, claim, client, secret, key, revocation, control_plane, core_entity
    kind       TEXT NOT NULL,
    -- The auth server or control plane the change belongs to.
    scope_id   TEXT NOT NULL,
    -- The entity's id; a core entity's is `<kind>:<id>`, a revocation's the token's jti.
    entity_id  TEXT NOT NULL,
    -- Revocations: when the token would have expired.
    expires_at BIGINT,
    created_at BIGINT NOT NULL
);
CREATE INDEX changes_created ON changes (created_at);

CREATE FUNCTION gatehouse_record_change() RETURNS trigger LANGUAGE plpgsql AS $$
DECLARE
    r       RECORD;
    v       BIGINT;
    kind    TEXT := TG_ARGV[0];
    scope   TEXT;
    entity  TEXT;
    expires BIGINT;
BEGIN
    IF TG_OP = 'DELETE' THEN r := OLD; ELSE r := NEW; END IF;
    IF kind IN ('auth_server', 'control_plane') THEN
        scope := r.id;
        entity := r.id;
    ELSIF kind = 'core_entity' THEN
        scope := r.control_plane_id;
        entity := r.kind || ':' || r.id;
    ELSE
        scope := r.auth_server_id;
        entity := r.id;
    END IF;
    IF kind = 'revocation' THEN
        expires := r.expires_at;
    END IF;
    UPDATE change_version SET version = version + 1 WHERE id = 1 RETURNING version INTO v;
    INSERT INTO changes (version, kind, scope_id, entity_id, expires_at, created_at)
        VALUES (v, kind, scope, entity, expires, EXTRACT(EPOCH FROM now())::BIGINT);
    PERFORM pg_notify('gatehouse_changes', v::TEXT);
    RETURN NULL;
END;
$$;

CREATE TRIGGER auth_servers_change AFTER INSERT OR UPDATE OR DELETE ON auth_servers
    FOR EACH ROW EXECUTE FUNCTION gatehouse_record_change('auth_server');
CREATE TRIGGER scopes_change AFTER INSERT OR UPDATE OR DELETE ON scopes
    FOR EACH ROW EXECUTE FUNCTION gatehouse_record_change('scope');
CREATE TRIGGER claims_change AFTER INSERT OR UPDATE OR DELETE ON claims
    FOR EACH ROW EXECUTE FUNCTION gatehouse_record_change('claim');
CREATE TRIGGER clients_change AFTER INSERT OR UPDATE OR DELETE ON clients
    FOR EACH ROW EXECUTE FUNCTION gatehouse_record_change('client');
CREATE TRIGGER client_secrets_change AFTER INSERT OR UPDATE OR DELETE ON client_secrets
    FOR EACH ROW EXECUTE FUNCTION gatehouse_record_change('secret');
CREATE TRIGGER signing_keys_change AFTER INSERT OR UPDATE OR DELETE ON signing_keys
    FOR EACH ROW EXECUTE FUNCTION gatehouse_record_change('key');
CREATE TRIGGER control_planes_change AFTER INSERT OR UPDATE OR DELETE ON control_planes
    FOR EACH ROW EXECUTE FUNCTION gatehouse_record_change('control_plane');
CREATE TRIGGER core_entities_change AFTER INSERT OR UPDATE OR DELETE ON core_entities
    FOR EACH ROW EXECUTE FUNCTION gatehouse_record_change('core_entity');
-- Issuing tokens is not a change; revoking one is.
CREATE TRIGGER issued_tokens_revocation AFTER UPDATE OF revoked_at ON issued_tokens
    FOR EACH ROW WHEN (OLD.revoked_at IS NULL AND NEW.revoked_at IS NOT NULL)
    EXECUTE FUNCTION gatehouse_record_change('revocation');
