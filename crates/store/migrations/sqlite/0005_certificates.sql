-- Certificates, SNIs and CA certificates are core entities like the others; an SNI references
-- its certificate through this column, which the delete cascade and the reference check use.
ALTER TABLE core_entities ADD COLUMN certificate_id TEXT;
CREATE INDEX core_entities_certificate ON core_entities (control_plane_id, certificate_id);
