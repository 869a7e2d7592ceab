-- Events, the producers' outbox, and the sequencer that gives ids in commit order.
-- How and why: see the module docstring of sse_hub/store.py.

CREATE SCHEMA IF NOT EXISTS sse_hub;

CREATE FUNCTION sse_hub.topic_problem(p_topic text) RETURNS text
IMMUTABLE LANGUAGE sql AS $$
    SELECT CASE
        WHEN p_topic IS NULL THEN 'topic must not be null'
        WHEN octet_length(p_topic) NOT BETWEEN 1 AND 256
            THEN 'topic must be 1 to 256 bytes of UTF-8'
        WHEN p_topic ~ '[\x01-\x1f\x7f-\x9f]' THEN 'topic must not contain control characters'
    END
$$;

CREATE FUNCTION sse_hub.event_type_problem(p_event text) RETURNS text
IMMUTABLE LANGUAGE sql AS $$
    SELECT CASE
        WHEN p_event IS NULL THEN NULL
        WHEN octet_length(p_event) NOT BETWEEN 1 AND 256
            THEN 'event must be 1 to 256 bytes of UTF-8'
        WHEN p_event ~ '[\x01-\x1f\x7f-\x9f]' THEN 'event must not contain control characters'
    END
$$;

-- The truth: every event, with its final id. Ids are dense and follow commit order.
CREATE TABLE sse_hub.events (
    id bigint PRIMARY KEY,
    topic text NOT NULL CHECK (sse_hub.topic_problem(topic) IS NULL),
    event text CHECK (sse_hub.event_type_problem(event) IS NULL),
    data text NOT NULL,
    created_at timestamptz NOT NULL DEFAULT now()
);

-- Keyed replay of exact topics: WHERE topic = ANY(...) AND id > $after.
CREATE INDEX events_topic_id_idx ON sse_hub.events (topic, id);

-- Staging for producers that publish inside their own transactions. A row is
-- visible here only once its transaction commits; the sequencer then moves it
-- into sse_hub.events with the next final id.
CREATE TABLE sse_hub.outbox (
    seq bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    topic text NOT NULL CHECK (sse_hub.topic_problem(topic) IS NULL),
    event text CHECK (sse_hub.event_type_problem(event) IS NULL),
    data text NOT NULL,
    created_at timestamptz NOT NULL DEFAULT clock_timestamp()
);

-- One row: the last id handed out. Its row lock serialises sequencing (a few
-- milliseconds each), never the producers' own transactions.
CREATE TABLE sse_hub.sequencer (
    only_row boolean PRIMARY KEY DEFAULT true CHECK (only_row),
    last_id bigint NOT NULL
);
INSERT INTO sse_hub.sequencer (last_id) VALUES (0);

-- NOTIFY is only a doorbell; the hubs read the tables for the truth.
CREATE FUNCTION sse_hub.ring_outbox() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    PERFORM pg_notify('sse_hub_outbox', '');
    RETURN NULL;
END
$$;

CREATE TRIGGER outbox_ring AFTER INSERT ON sse_hub.outbox
    FOR EACH STATEMENT EXECUTE FUNCTION sse_hub.ring_outbox();

-- For producers, inside their own transaction. Subscribers see the event if and
-- when that transaction commits. Returns nothing: the final id is assigned after
-- the commit, by the sequencer (a plain INSERT INTO sse_hub.outbox works too).
CREATE FUNCTION sse_hub.publish(p_topic text, p_data text, p_event text DEFAULT NULL)
RETURNS void
LANGUAGE plpgsql AS $$
DECLARE
    v_problem text := coalesce(sse_hub.topic_problem(p_topic), sse_hub.event_type_problem(p_event));
BEGIN
    IF v_problem IS NOT NULL THEN
        RAISE EXCEPTION 'sse_hub.publish: %', v_problem USING ERRCODE = 'check_violation';
    END IF;
    IF p_data IS NULL THEN
        RAISE EXCEPTION 'sse_hub.publish: data must not be null' USING ERRCODE = 'not_null_violation';
    END IF;
    INSERT INTO sse_hub.outbox (topic, event, data) VALUES (p_topic, p_event, p_data);
END
$$;

-- The sequencer, called by the hubs only (in a transaction of its own). Under the
-- sequencer row lock it first moves every committed outbox row (they committed
-- before this call started), then appends the given events; returns the id of
-- the first given event (the others follow consecutively).
CREATE FUNCTION sse_hub.append(p_topics text[], p_events text[], p_data text[])
RETURNS bigint
LANGUAGE plpgsql AS $$
DECLARE
    v_last bigint;
    v_moved bigint;
    v_count bigint := coalesce(cardinality(p_topics), 0);
BEGIN
    IF v_count = 0 AND NOT EXISTS (SELECT 1 FROM sse_hub.outbox) THEN
        RETURN NULL;  -- nothing to sequence: do not take the lock
    END IF;
    -- Each statement below takes a fresh snapshot (READ COMMITTED, volatile
    -- function), so it sees everything committed before the lock was granted.
    SELECT last_id INTO v_last FROM sse_hub.sequencer FOR UPDATE;

    WITH moved AS (
        DELETE FROM sse_hub.outbox RETURNING seq, topic, event, data, created_at
    )
    INSERT INTO sse_hub.events (id, topic, event, data, created_at)
    SELECT v_last + row_number() OVER (ORDER BY seq), topic, event, data, created_at
    FROM moved;
    GET DIAGNOSTICS v_moved = ROW_COUNT;
    v_last := v_last + v_moved;

    IF v_count > 0 THEN
        INSERT INTO sse_hub.events (id, topic, event, data)
        SELECT v_last + u.n, u.topic, u.event, u.data
        FROM unnest(p_topics, p_events, p_data) WITH ORDINALITY AS u(topic, event, data, n);
    END IF;

    IF v_moved + v_count > 0 THEN
        UPDATE sse_hub.sequencer SET last_id = v_last + v_count;
        PERFORM pg_notify('sse_hub_events', (v_last + v_count)::text);
    END IF;
    RETURN v_last + 1;
END
$$;
