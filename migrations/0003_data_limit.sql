-- The data size limit on the SQL path. One row: the most bytes (UTF-8) of data an
-- event published from SQL may have. Every hub writes its --max-data here when it
-- starts; until one does, this is --max-data's default (256 KiB).
CREATE TABLE sse_hub.limits (
    only_row boolean PRIMARY KEY DEFAULT true CHECK (only_row),
    max_data_bytes integer NOT NULL CHECK (max_data_bytes > 0)
);
INSERT INTO sse_hub.limits (max_data_bytes) VALUES (262144);

-- On the outbox, so that sse_hub.publish() and a plain INSERT are both held to it.
-- (The hubs check their own events before calling sse_hub.append().)
CREATE FUNCTION sse_hub.check_outbox_data() RETURNS trigger
LANGUAGE plpgsql AS $$
DECLARE
    v_size integer := pg_catalog.octet_length(NEW.data);
    v_limit integer;
BEGIN
    SELECT max_data_bytes INTO v_limit FROM sse_hub.limits;
    IF v_size > v_limit THEN
        RAISE EXCEPTION 'sse_hub: data is % bytes; the limit is % bytes', v_size, v_limit
            USING ERRCODE = 'string_data_right_truncation',
                  HINT = 'The limit is the hubs'' --max-data (stored in sse_hub.limits).';
    END IF;
    RETURN NEW;
END
$$;
REVOKE EXECUTE ON FUNCTION sse_hub.check_outbox_data() FROM PUBLIC;

CREATE TRIGGER outbox_data_limit BEFORE INSERT OR UPDATE OF data ON sse_hub.outbox
    FOR EACH ROW EXECUTE FUNCTION sse_hub.check_outbox_data();
