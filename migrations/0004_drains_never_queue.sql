-- A drain (a call with no events of its own) never queues for the sequencer.
--
-- Every hub hears each outbox ring and drains. With the lock taken in turn, N hubs
-- on one database meant N sequencer transactions per ring, one after the other,
-- each holding up the publishes behind it. Now one drains and the others return
-- -1 at once: the holder commits, and a holder that sequenced anything rings
-- sse_hub_events, on which a hub whose drain was skipped drains again. A row
-- committed while a drain that sequences nothing holds the lock is drained by
-- that hub itself, which heard the row's ring during its transaction.

CREATE OR REPLACE FUNCTION sse_hub.append(p_topics text[], p_events text[], p_data text[])
RETURNS bigint
LANGUAGE plpgsql AS $$
DECLARE
    v_last bigint;
    v_moved bigint;
    v_count bigint := coalesce(cardinality(p_topics), 0);
BEGIN
    -- Each statement below takes a fresh snapshot (READ COMMITTED, volatile
    -- function), so it sees everything committed before the lock was granted.
    IF v_count > 0 THEN
        SELECT last_id INTO v_last FROM sse_hub.sequencer FOR UPDATE;
    ELSIF NOT EXISTS (SELECT 1 FROM sse_hub.outbox) THEN
        RETURN NULL;  -- nothing to sequence: do not take the lock
    ELSE
        SELECT last_id INTO v_last FROM sse_hub.sequencer FOR UPDATE SKIP LOCKED;
        IF NOT FOUND THEN
            RETURN -1;  -- busy: the holder sequences the rows (see the header)
        END IF;
    END IF;

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
