-- Least privilege for SQL producers. Members of the group role sse_hub_producer
-- may call sse_hub.publish() and nothing else: publish() runs with the rights of
-- its owner (the role that migrates), so producers need no rights on any table
-- and can neither read events nor move the sequencer.

-- PostgreSQL, "Writing SECURITY DEFINER Functions Safely": a search_path that no
-- caller can write to, with pg_temp last. publish() and the checks it calls name
-- every table and function with its schema; built-ins resolve in pg_catalog.
ALTER FUNCTION sse_hub.publish(text, text, text)
    SECURITY DEFINER
    SET search_path = pg_catalog, pg_temp;

-- Makes sse_hub_producer when it is missing (roles belong to the whole cluster, so
-- another database may have made it already) and gives it exactly USAGE on the
-- schema and EXECUTE on publish(). A user who may not create roles gets a warning
-- and false, not an error: the hub works without it, and `sse-hub grant` calls
-- this again once a role administrator has made the role.
CREATE FUNCTION sse_hub.ensure_producer_role() RETURNS boolean
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
    IF NOT EXISTS (SELECT 1 FROM pg_catalog.pg_roles WHERE rolname = 'sse_hub_producer') THEN
        BEGIN
            CREATE ROLE sse_hub_producer NOLOGIN;
        EXCEPTION
            WHEN duplicate_object OR unique_violation THEN
                NULL;  -- made at this moment by a migration of another database
            WHEN insufficient_privilege THEN
                RAISE WARNING 'sse_hub: role sse_hub_producer is missing and % may not create roles',
                    current_user
                    USING HINT = 'For least-privilege SQL producers, have a role administrator run '
                        'CREATE ROLE sse_hub_producer NOLOGIN, then run: sse-hub grant ROLE';
                RETURN false;
        END;
    END IF;
    -- Granting only what is missing keeps reruns from rewriting the catalog rows.
    IF NOT pg_catalog.has_schema_privilege('sse_hub_producer', 'sse_hub', 'USAGE') THEN
        GRANT USAGE ON SCHEMA sse_hub TO sse_hub_producer;
    END IF;
    IF NOT pg_catalog.has_function_privilege(
        'sse_hub_producer', 'sse_hub.publish(text, text, text)', 'EXECUTE'
    ) THEN
        GRANT EXECUTE ON FUNCTION sse_hub.publish(text, text, text) TO sse_hub_producer;
    END IF;
    RETURN true;
END
$$;

-- Functions are executable by PUBLIC by default; only publish() is meant for
-- producers, and only through the group role. (This covers every function made
-- so far; later migrations revoke on the functions they add.)
REVOKE EXECUTE ON ALL FUNCTIONS IN SCHEMA sse_hub FROM PUBLIC;

SELECT sse_hub.ensure_producer_role();
