-- Gateway: control planes and their core entities. Timestamps of control planes are
-- microseconds since the Unix epoch; core entities keep Kong's JSON in `body` (the Admin API's
-- own shape, Unix-second timestamps) with the columns lookups and constraints need beside it.
CREATE TABLE control_planes (
    id            TEXT PRIMARY KEY,
    name          TEXT NOT NULL UNIQUE,
    description   TEXT NOT NULL,
    labels        TEXT NOT NULL,
    cluster_type  TEXT NOT NULL,
    auth_type     TEXT NOT NULL,
    cloud_gateway BOOLEAN NOT NULL,
    proxy_urls    TEXT NOT NULL,
    created_at    BIGINT NOT NULL,
    updated_at    BIGINT NOT NULL
);

CREATE TABLE core_entities (
    control_plane_id TEXT NOT NULL REFERENCES control_planes(id) ON DELETE CASCADE,
    kind             TEXT NOT NULL,
    id               TEXT NOT NULL,
    endpoint_key     TEXT,
    alt_key          TEXT,
    service_id       TEXT,
    route_id         TEXT,
    consumer_id      TEXT,
    created_at       BIGINT NOT NULL,
    body             TEXT NOT NULL,
    PRIMARY KEY (control_plane_id, kind, id)
);

-- NULLs are distinct in both backends, so entities without a name do not collide.
CREATE UNIQUE INDEX core_entities_endpoint_key ON core_entities (control_plane_id, kind, endpoint_key);
CREATE UNIQUE INDEX core_entities_alt_key ON core_entities (control_plane_id, kind, alt_key);
CREATE INDEX core_entities_service ON core_entities (control_plane_id, service_id);
CREATE INDEX core_entities_route ON core_entities (control_plane_id, route_id);
CREATE INDEX core_entities_consumer ON core_entities (control_plane_id, consumer_id);
