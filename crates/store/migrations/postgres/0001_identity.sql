-- Identity server: auth servers and everything below them. Timestamps are microseconds since
-- the Unix epoch; lists and label maps are JSON text (the same in both backends).
CREATE TABLE settings (
    key   TEXT PRIMARY KEY,
    value TEXT NOT NULL
);

CREATE TABLE auth_servers (
    id                TEXT PRIMARY KEY,
    name              TEXT NOT NULL UNIQUE,
    description       TEXT NOT NULL,
    audience          TEXT NOT NULL,
    signing_algorithm TEXT NOT NULL,
    labels            TEXT NOT NULL,
    trusted_origins   TEXT NOT NULL,
    issuer_slug       TEXT NOT NULL UNIQUE,
    created_at        BIGINT NOT NULL,
    updated_at        BIGINT NOT NULL
);

CREATE TABLE scopes (
    id                  TEXT PRIMARY KEY,
    auth_server_id      TEXT NOT NULL REFERENCES auth_servers(id) ON DELETE CASCADE,
    name                TEXT NOT NULL,
    description         TEXT NOT NULL,
    is_default          BOOLEAN NOT NULL,
    include_in_metadata BOOLEAN NOT NULL,
    enabled             BOOLEAN NOT NULL,
    created_at          BIGINT NOT NULL,
    updated_at          BIGINT NOT NULL,
    UNIQUE (auth_server_id, name)
);

CREATE TABLE claims (
    id                    TEXT PRIMARY KEY,
    auth_server_id        TEXT NOT NULL REFERENCES auth_servers(id) ON DELETE CASCADE,
    name                  TEXT NOT NULL,
    value                 TEXT NOT NULL,
    include_in_token      BOOLEAN NOT NULL,
    include_in_all_scopes BOOLEAN NOT NULL,
    include_in_scopes     TEXT NOT NULL,
    enabled               BOOLEAN NOT NULL,
    created_at            BIGINT NOT NULL,
    updated_at            BIGINT NOT NULL,
    UNIQUE (auth_server_id, name)
);

CREATE TABLE clients (
    auth_server_id             TEXT NOT NULL REFERENCES auth_servers(id) ON DELETE CASCADE,
    id                         TEXT NOT NULL,
    name                       TEXT NOT NULL,
    grant_types                TEXT NOT NULL,
    response_types             TEXT NOT NULL,
    redirect_uris              TEXT NOT NULL,
    login_uri                  TEXT,
    access_token_duration      BIGINT NOT NULL,
    id_token_duration          BIGINT NOT NULL,
    allow_all_scopes           BOOLEAN NOT NULL,
    allow_scopes               TEXT NOT NULL,
    labels                     TEXT NOT NULL,
    token_endpoint_auth_method TEXT NOT NULL,
    created_at                 BIGINT NOT NULL,
    updated_at                 BIGINT NOT NULL,
    PRIMARY KEY (auth_server_id, id),
    UNIQUE (auth_server_id, name)
);

CREATE TABLE client_secrets (
    id             TEXT PRIMARY KEY,
    auth_server_id TEXT NOT NULL,
    client_id      TEXT NOT NULL,
    hash           TEXT NOT NULL,
    enabled        BOOLEAN NOT NULL,
    created_at     BIGINT NOT NULL,
    updated_at     BIGINT NOT NULL,
    FOREIGN KEY (auth_server_id, client_id) REFERENCES clients(auth_server_id, id) ON DELETE CASCADE
);
CREATE INDEX client_secrets_client ON client_secrets (auth_server_id, client_id);

CREATE TABLE issued_tokens (
    id                  TEXT PRIMARY KEY,
    auth_server_id      TEXT NOT NULL,
    client_id           TEXT NOT NULL,
    granted_scope_names TEXT NOT NULL,
    created_at          BIGINT NOT NULL,
    expires_at          BIGINT NOT NULL,
    revoked_at          BIGINT,
    FOREIGN KEY (auth_server_id, client_id) REFERENCES clients(auth_server_id, id) ON DELETE CASCADE
);
CREATE INDEX issued_tokens_client ON issued_tokens (auth_server_id, client_id, created_at);
CREATE INDEX issued_tokens_revoked ON issued_tokens (revoked_at) WHERE revoked_at IS NOT NULL;
CREATE INDEX issued_tokens_expiry ON issued_tokens (expires_at);

CREATE TABLE signing_keys (
    id                    TEXT PRIMARY KEY,
    auth_server_id        TEXT NOT NULL REFERENCES auth_servers(id) ON DELETE CASCADE,
    algorithm             TEXT NOT NULL,
    encrypted_private_key BYTEA NOT NULL,
    public_jwk            TEXT NOT NULL,
    created_at            BIGINT NOT NULL,
    retired_at            BIGINT
);
CREATE INDEX signing_keys_server ON signing_keys (auth_server_id);
