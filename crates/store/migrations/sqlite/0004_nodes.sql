-- The nodes serving each control plane (GET /v2/control-planes/{id}/nodes): each node upserts
-- its row on a timer and after every configuration it applies. Not a change-feed table: a
-- node's heartbeat changes nothing that is served.
CREATE TABLE nodes (
    id               TEXT PRIMARY KEY,
    control_plane_id TEXT NOT NULL,
    hostname         TEXT NOT NULL,
    version          TEXT NOT NULL,
    config_hash      TEXT NOT NULL,
    config_version   BIGINT NOT NULL,
    sync_error       TEXT,
    created_at       BIGINT NOT NULL,
    last_ping        BIGINT NOT NULL
);
CREATE INDEX nodes_control_plane ON nodes (control_plane_id, hostname);
