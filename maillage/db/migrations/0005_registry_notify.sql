-- Registry changes are announced to the gateways (NOTIFY maillage_devices, 'tenant/device_id') so
-- that their caches drop a deleted or changed device at once; DLQ listing by device.
-- depends: 0004_timescale

CREATE FUNCTION maillage_notify_device_change() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF TG_OP IN ('UPDATE', 'DELETE') THEN
        PERFORM pg_notify('maillage_devices', OLD.tenant_id || '/' || OLD.device_id);
    END IF;
    IF TG_OP IN ('INSERT', 'UPDATE') THEN
        PERFORM pg_notify('maillage_devices', NEW.tenant_id || '/' || NEW.device_id);
    END IF;
    RETURN NULL;
END $$;

-- Only the columns ingest reads: status and last_seen_at updates (every storage batch) stay quiet.
CREATE TRIGGER devices_notify_change
    AFTER INSERT OR DELETE OR UPDATE OF tenant_id, device_id, type, installed_at ON devices
    FOR EACH ROW EXECUTE FUNCTION maillage_notify_device_change();

CREATE INDEX rejected_tenant_device ON rejected (tenant_id, device_id, id DESC);
