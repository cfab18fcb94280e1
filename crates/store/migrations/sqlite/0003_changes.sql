-- The change feed (DESIGN.md §6), as on PostgreSQL (see its 0003_changes.sql): every write
-- that changes what a node serves adds a row to `changes` in its own transaction, through the
-- triggers below. One SQLite file serves one node, which learns of its own writes in-process.

CREATE TABLE change_version (
    id      INTEGER PRIMARY KEY CHECK (id = 1),
    version INTEGER NOT NULL
);
INSERT INTO change_version (id, version) VALUES (1, 0);

CREATE TABLE changes (
    version    INTEGER PRIMARY KEY,
    kind       TEXT NOT NULL,
    scope_id   TEXT NOT NULL,
    entity_id  TEXT NOT NULL,
    expires_at INTEGER,
    created_at INTEGER NOT NULL
);
CREATE INDEX changes_created ON changes (created_at);

CREATE TRIGGER auth_servers_insert AFTER INSERT ON auth_servers
BEGIN
    UPDATE change_version SET version = version + 1 WHERE id = 1;
    INSERT INTO changes (version, kind, scope_id, entity_id, expires_at, created_at)
        VALUES ((SELECT version FROM change_version WHERE id = 1), 'auth_server', NEW.id, NEW.id,
                NULL, CAST(strftime('%s', 'now') AS INTEGER));
END;

CREATE TRIGGER auth_servers_update AFTER UPDATE ON auth_servers
BEGIN
    UPDATE change_version SET version = version + 1 WHERE id = 1;
    INSERT INTO changes (version, kind, scope_id, entity_id, expires_at, created_at)
        VALUES ((SELECT version FROM change_version WHERE id = 1), 'auth_server', NEW.id, NEW.id,
                NULL, CAST(strftime('%s', 'now') AS INTEGER));
END;

CREATE TRIGGER auth_servers_delete AFTER DELETE ON auth_servers
BEGIN
    UPDATE change_version SET version = version + 1 WHERE id = 1;
    INSERT INTO changes (version, kind, scope_id, entity_id, expires_at, created_at)
        VALUES ((SELECT version FROM change_version WHERE id = 1), 'auth_server', OLD.id, OLD.id,
                NULL, CAST(strftime('%s', 'now') AS INTEGER));
END;

CREATE TRIGGER scopes_insert AFTER INSERT ON scopes
BEGIN
    UPDATE change_version SET version = version + 1 WHERE id = 1;
    INSERT INTO changes (version, kind, scope_id, entity_id, expires_at, created_at)
        VALUES ((SELECT version FROM change_version WHERE id = 1), 'scope', NEW.auth_server_id, NEW.id,
                NULL, CAST(strftime('%s', 'now') AS INTEGER));
END;

CREATE TRIGGER scopes_update AFTER UPDATE ON scopes
BEGIN
    UPDATE change_version SET version = version + 1 WHERE id = 1;
    INSERT INTO changes (version, kind, scope_id, entity_id, expires_at, created_at)
        VALUES ((SELECT version FROM change_version WHERE id = 1), 'scope', NEW.auth_server_id, NEW.id,
                NULL, CAST(strftime('%s', 'now') AS INTEGER));
END;

CREATE TRIGGER scopes_delete AFTER DELETE ON scopes
BEGIN
    UPDATE change_version SET version = version + 1 WHERE id = 1;
    INSERT INTO changes (version, kind, scope_id, entity_id, expires_at, created_at)
        VALUES ((SELECT version FROM change_version WHERE id = 1), 'scope', OLD.auth_server_id, OLD.id,
                NULL, CAST(strftime('%s', 'now') AS INTEGER));
END;

CREATE TRIGGER claims_insert AFTER INSERT ON claims
BEGIN
    UPDATE change_version SET version = version + 1 WHERE id = 1;
    INSERT INTO changes (version, kind, scope_id, entity_id, expires_at, created_at)
        VALUES ((SELECT version FROM change_version WHERE id = 1), 'claim', NEW.auth_server_id, NEW.id,
                NULL, CAST(strftime('%s', 'now') AS INTEGER));
END;

CREATE TRIGGER claims_update AFTER UPDATE ON claims
BEGIN
    UPDATE change_version SET version = version + 1 WHERE id = 1;
    INSERT INTO changes (version, kind, scope_id, entity_id, expires_at, created_at)
        VALUES ((SELECT version FROM change_version WHERE id = 1), 'claim', NEW.auth_server_id, NEW.id,
                NULL, CAST(strftime('%s', 'now') AS INTEGER));
END;

CREATE TRIGGER claims_delete AFTER DELETE ON claims
BEGIN
    UPDATE change_version SET version = version + 1 WHERE id = 1;
    INSERT INTO changes (version, kind, scope_id, entity_id, expires_at, created_at)
        VALUES ((SELECT version FROM change_version WHERE id = 1), 'claim', OLD.auth_server_id, OLD.id,
                NULL, CAST(strftime('%s', 'now') AS INTEGER));
END;

CREATE TRIGGER clients_insert AFTER INSERT ON clients
BEGIN
    UPDATE change_version SET version = version + 1 WHERE id = 1;
    INSERT INTO changes (version, kind, scope_id, entity_id, expires_at, created_at)
        VALUES ((SELECT version FROM change_version WHERE id = 1), 'client', NEW.auth_server_id, NEW.id,
                NULL, CAST(strftime('%s', 'now') AS INTEGER));
END;

CREATE TRIGGER clients_update AFTER UPDATE ON clients
BEGIN
    UPDATE change_version SET version = version + 1 WHERE id = 1;
    INSERT INTO changes (version, kind, scope_id, entity_id, expires_at, created_at)
        VALUES ((SELECT version FROM change_version WHERE id = 1), 'client', NEW.auth_server_id, NEW.id,
                NULL, CAST(strftime('%s', 'now') AS INTEGER));
END;

CREATE TRIGGER clients_delete AFTER DELETE ON clients
BEGIN
    UPDATE change_version SET version = version + 1 WHERE id = 1;
    INSERT INTO changes (version, kind, scope_id, entity_id, expires_at, created_at)
        VALUES ((SELECT version FROM change_version WHERE id = 1), 'client', OLD.auth_server_id, OLD.id,
                NULL, CAST(strftime('%s', 'now') AS INTEGER));
END;

CREATE TRIGGER client_secrets_insert AFTER INSERT ON client_secrets
BEGIN
    UPDATE change_version SET version = version + 1 WHERE id = 1;
    INSERT INTO changes (version, kind, scope_id, entity_id, expires_at, created_at)
        VALUES ((SELECT version FROM change_version WHERE id = 1), 'secret', NEW.auth_server_id, NEW.id,
                NULL, CAST(strftime('%s', 'now') AS INTEGER));
END;

CREATE TRIGGER client_secrets_update AFTER UPDATE ON client_secrets
BEGIN
    UPDATE change_version SET version = version + 1 WHERE id = 1;
    INSERT INTO changes (version, kind, scope_id, entity_id, expires_at, created_at)
        VALUES ((SELECT version FROM change_version WHERE id = 1), 'secret', NEW.auth_server_id, NEW.id,
                NULL, CAST(strftime('%s', 'now') AS INTEGER));
END;

CREATE TRIGGER client_secrets_delete AFTER DELETE ON client_secrets
BEGIN
    UPDATE change_version SET version = version + 1 WHERE id = 1;
    INSERT INTO changes (version, kind, scope_id, entity_id, expires_at, created_at)
        VALUES ((SELECT version FROM change_version WHERE id = 1), 'secret', OLD.auth_server_id, OLD.id,
                NULL, CAST(strftime('%s', 'now') AS INTEGER));
END;

CREATE TRIGGER signing_keys_insert AFTER INSERT ON signing_keys
BEGIN
    UPDATE change_version SET version = version + 1 WHERE id = 1;
    INSERT INTO changes (version, kind, scope_id, entity_id, expires_at, created_at)
        VALUES ((SELECT version FROM change_version WHERE id = 1), 'key', NEW.auth_server_id, NEW.id,
                NULL, CAST(strftime('%s', 'now') AS INTEGER));
END;

CREATE TRIGGER signing_keys_update AFTER UPDATE ON signing_keys
BEGIN
    UPDATE change_version SET version = version + 1 WHERE id = 1;
    INSERT INTO changes (version, kind, scope_id, entity_id, expires_at, created_at)
        VALUES ((SELECT version FROM change_version WHERE id = 1), 'key', NEW.auth_server_id, NEW.id,
                NULL, CAST(strftime('%s', 'now') AS INTEGER));
END;

CREATE TRIGGER signing_keys_delete AFTER DELETE ON signing_keys
BEGIN
    UPDATE change_version SET version = version + 1 WHERE id = 1;
    INSERT INTO changes (version, kind, scope_id, entity_id, expires_at, created_at)
        VALUES ((SELECT version FROM change_version WHERE id = 1), 'key', OLD.auth_server_id, OLD.id,
                NULL, CAST(strftime('%s', 'now') AS INTEGER));
END;

CREATE TRIGGER control_planes_insert AFTER INSERT ON control_planes
BEGIN
    UPDATE change_version SET version = version + 1 WHERE id = 1;
    INSERT INTO changes (version, kind, scope_id, entity_id, expires_at, created_at)
        VALUES ((SELECT version FROM change_version WHERE id = 1), 'control_plane', NEW.id, NEW.id,
                NULL, CAST(strftime('%s', 'now') AS INTEGER));
END;

CREATE TRIGGER control_planes_update AFTER UPDATE ON control_planes
BEGIN
    UPDATE change_version SET version = version + 1 WHERE id = 1;
    INSERT INTO changes (version, kind, scope_id, entity_id, expires_at, created_at)
        VALUES ((SELECT version FROM change_version WHERE id = 1), 'control_plane', NEW.id, NEW.id,
                NULL, CAST(strftime('%s', 'now') AS INTEGER));
END;

CREATE TRIGGER control_planes_delete AFTER DELETE ON control_planes
BEGIN
    UPDATE change_version SET version = version + 1 WHERE id = 1;
    INSERT INTO changes (version, kind, scope_id, entity_id, expires_at, created_at)
        VALUES ((SELECT version FROM change_version WHERE id = 1), 'control_plane', OLD.id, OLD.id,
                NULL, CAST(strftime('%s', 'now') AS INTEGER));
END;

CREATE TRIGGER core_entities_insert AFTER INSERT ON core_entities
BEGIN
    UPDATE change_version SET version = version + 1 WHERE id = 1;
    INSERT INTO changes (version, kind, scope_id, entity_id, expires_at, created_at)
        VALUES ((SELECT version FROM change_version WHERE id = 1), 'core_entity', NEW.control_plane_id, NEW.kind || ':' || NEW.id,
                NULL, CAST(strftime('%s', 'now') AS INTEGER));
END;

CREATE TRIGGER core_entities_update AFTER UPDATE ON core_entities
BEGIN
    UPDATE change_version SET version = version + 1 WHERE id = 1;
    INSERT INTO changes (version, kind, scope_id, entity_id, expires_at, created_at)
        VALUES ((SELECT version FROM change_version WHERE id = 1), 'core_entity', NEW.control_plane_id, NEW.kind || ':' || NEW.id,
                NULL, CAST(strftime('%s', 'now') AS INTEGER));
END;

CREATE TRIGGER core_entities_delete AFTER DELETE ON core_entities
BEGIN
    UPDATE change_version SET version = version + 1 WHERE id = 1;
    INSERT INTO changes (version, kind, scope_id, entity_id, expires_at, created_at)
        VALUES ((SELECT version FROM change_version WHERE id = 1), 'core_entity', OLD.control_plane_id, OLD.kind || ':' || OLD.id,
                NULL, CAST(strftime('%s', 'now') AS INTEGER));
END;

-- Issuing tokens is not a change; revoking one is.
CREATE TRIGGER issued_tokens_revocation AFTER UPDATE OF revoked_at ON issued_tokens
    WHEN OLD.revoked_at IS NULL AND NEW.revoked_at IS NOT NULL
BEGIN
    UPDATE change_version SET version = version + 1 WHERE id = 1;
    INSERT INTO changes (version, kind, scope_id, entity_id, expires_at, created_at)
        VALUES ((SELECT version FROM change_version WHERE id = 1), 'revocation', NEW.auth_server_id, NEW.id,
                NEW.expires_at, CAST(strftime('%s', 'now') AS INTEGER));
END;
