-- pgcast: channel rules, publish, reading by position, cursors.

-- SPEC §2: 1–200 bytes of [A-Za-z0-9_.:@/-].
CREATE OR REPLACE FUNCTION realtime.valid_channel(p_name text) RETURNS boolean
LANGUAGE sql IMMUTABLE STRICT PARALLEL SAFE AS $$
    SELECT octet_length(p_name) BETWEEN 1 AND 200 AND p_name ~ '^[A-Za-z0-9_.:@/-]+$'
$$;

-- The part before the first ':' or '.' (project:abc -> project, query.42 -> query).
CREATE OR REPLACE FUNCTION realtime.channel_type(p_name text) RETURNS text
LANGUAGE sql IMMUTABLE STRICT PARALLEL SAFE AS $$
    SELECT substring(p_name FROM '^[^:.]*')
$$;

-- What follows the type (project:abc -> abc, entity:Task:7 -> Task:7), NULL if nothing.
CREATE OR REPLACE FUNCTION realtime.channel_entity_id(p_name text) RETURNS text
LANGUAGE sql IMMUTABLE STRICT PARALLEL SAFE AS $$
    SELECT nullif(substring(p_name FROM '^[^:.]*[:.](.*)$'), '')
$$;

CREATE OR REPLACE FUNCTION realtime.check_channel(p_name text) RETURNS void
LANGUAGE plpgsql IMMUTABLE AS $$
BEGIN
    IF p_name IS NULL OR NOT realtime.valid_channel(p_name) THEN
        RAISE EXCEPTION USING ERRCODE = '22023',
            MESSAGE = format('pgcast: invalid channel name %s', coalesce(quote_literal(left(p_name, 60)), 'NULL')),
            HINT = 'A channel name is 1-200 bytes of letters, digits and _ . : @ / -';
    END IF;
END $$;

CREATE OR REPLACE FUNCTION realtime.check_tenant(p_tenant text) RETURNS void
LANGUAGE plpgsql IMMUTABLE AS $$
BEGIN
    IF p_tenant IS NULL OR p_tenant = '' OR octet_length(p_tenant) > 200 THEN
        RAISE EXCEPTION USING ERRCODE = '22023',
            MESSAGE = 'pgcast: tenant must be a text of 1-200 bytes';
    END IF;
END $$;

-- Publish one event; returns its seq. Runs inside the caller's transaction: the event
-- exists, and listeners are woken, if and only if that transaction commits.
--
-- Ordering: the upsert on realtime_channels locks the channel's row until commit, so
-- two transactions publishing to one channel get consecutive seqs in commit order, and
-- a rolled-back transaction gives its seq back. Different channels lock different rows
-- and never wait for each other.
--
-- Wake-up: one NOTIFY on 'realtime_events' per event. Its payload is a small JSON
-- header, then a newline and the event's payload when the whole fits well under
-- PostgreSQL's 8000-byte limit; larger events send the header alone and listeners
-- fetch the body from the log by position. PostgreSQL serialises notifying commits on
-- one cluster-wide lock held through the commit's WAL flush; that cost is per
-- transaction, not per event, so batching publishes into one transaction is the cheap
-- path (docs/operations.md: synchronous_commit).
CREATE OR REPLACE FUNCTION realtime.publish(p_tenant text, p_channel text, p_event_type text, p_payload jsonb)
RETURNS bigint
LANGUAGE plpgsql VOLATILE AS $$
DECLARE
    v_seq  bigint;
    v_ts   timestamptz;
    v_head text;
    v_body text;
BEGIN
    PERFORM realtime.check_tenant(p_tenant);
    PERFORM realtime.check_channel(p_channel);
    IF p_event_type IS NULL OR p_event_type = '' OR octet_length(p_event_type) > 200 THEN
        RAISE EXCEPTION USING ERRCODE = '22023',
            MESSAGE = 'pgcast: event type must be a text of 1-200 bytes';
    END IF;
    IF p_payload IS NULL THEN
        p_payload := '{}'::jsonb;
    END IF;

    INSERT INTO realtime.realtime_channels AS c
           (tenant_id, channel_name, channel_type, entity_id, last_seq)
    VALUES (p_tenant, p_channel, realtime.channel_type(p_channel),
            realtime.channel_entity_id(p_channel), 1)
    ON CONFLICT (tenant_id, channel_name) DO UPDATE
        SET last_seq = c.last_seq + 1, last_activity_at = now()
    RETURNING c.last_seq INTO v_seq;

    -- Taken after the row lock, so timestamps rise with seq.
    v_ts := clock_timestamp();
    INSERT INTO realtime.realtime_events_log (tenant_id, channel, seq, event_type, event_data, published_at)
    VALUES (p_tenant, p_channel, v_seq, p_event_type, p_payload, v_ts);

    v_head := json_build_object('t', p_tenant, 'c', p_channel, 's', v_seq,
                                'ms', realtime.epoch_ms(v_ts), 'e', p_event_type)::text;
    v_body := p_payload::text;
    IF octet_length(v_head) + 1 + octet_length(v_body) <= 7900 THEN
        PERFORM pg_notify('realtime_events', v_head || E'\n' || v_body);
    ELSE
        PERFORM pg_notify('realtime_events', v_head);
    END IF;
    RETURN v_seq;
END $$;

CREATE OR REPLACE FUNCTION realtime.epoch_ms(p_ts timestamptz) RETURNS bigint
LANGUAGE sql IMMUTABLE STRICT PARALLEL SAFE AS $$
    SELECT floor(extract(epoch FROM p_ts) * 1000)::bigint
$$;

-- The current cursor of some channels ('a=3,b=0'), for a page rendered from the database
-- to embed and subscribe from, so nothing falls between page load and subscription.
CREATE OR REPLACE FUNCTION realtime.cursor(p_tenant text, p_channels text[]) RETURNS text
LANGUAGE plpgsql STABLE AS $$
DECLARE
    v_ch text;
BEGIN
    PERFORM realtime.check_tenant(p_tenant);
    FOREACH v_ch IN ARRAY coalesce(p_channels, '{}') LOOP
        PERFORM realtime.check_channel(v_ch);
    END LOOP;
    RETURN (SELECT coalesce(string_agg(u.ch || '=' || coalesce(c.last_seq, 0), ',' ORDER BY u.ord), '')
              FROM unnest(p_channels) WITH ORDINALITY AS u(ch, ord)
              LEFT JOIN realtime.realtime_channels c
                     ON c.tenant_id = p_tenant AND c.channel_name = u.ch);
END $$;

-- Read what follows some positions: p_after[i] is the last seq already seen on
-- p_channels[i]. Returns, first, a 'gap' row for every channel whose next position was
-- pruned by retention (seq = first missing, gap_to = last missing), then up to p_limit
-- 'event' rows in publish order (seq order within each channel).
-- One SQL statement, so gap rows and events come from one snapshot.
CREATE OR REPLACE FUNCTION realtime.read(p_tenant text, p_channels text[], p_after bigint[],
                                         p_limit integer DEFAULT 100)
RETURNS TABLE (kind text, channel text, seq bigint, gap_to bigint,
               event_type text, payload text, ts_ms bigint)
LANGUAGE sql STABLE AS $$
    WITH pos AS (
        SELECT u.ch, greatest(u.after, 0) AS after, coalesce(c.pruned_through, 0) AS pruned
          FROM unnest(p_channels, p_after) AS u(ch, after)
          LEFT JOIN realtime.realtime_channels c
                 ON c.tenant_id = p_tenant AND c.channel_name = u.ch
    ), gaps AS (
        SELECT 'gap'::text AS kind, p.ch AS channel, p.after + 1 AS seq, p.pruned AS gap_to,
               NULL::text AS event_type, NULL::text AS payload, NULL::bigint AS ts_ms,
               0::bigint AS ord
          FROM pos p
         WHERE p.after < p.pruned
    ), evs AS (
        SELECT 'event'::text AS kind, e.channel, e.seq, NULL::bigint AS gap_to, e.event_type,
               e.event_data::text AS payload, realtime.epoch_ms(e.published_at) AS ts_ms, e.id AS ord
          FROM pos p
         CROSS JOIN LATERAL (
               SELECT l.id, l.channel, l.seq, l.event_type, l.event_data, l.published_at
                 FROM realtime.realtime_events_log l
                WHERE l.tenant_id = p_tenant AND l.channel = p.ch
                  AND l.seq > greatest(p.after, p.pruned)
                ORDER BY l.seq
                LIMIT greatest(p_limit, 0)) e
         ORDER BY e.id
         LIMIT greatest(p_limit, 0)
    )
    SELECT a.kind, a.channel, a.seq, a.gap_to, a.event_type, a.payload, a.ts_ms
      FROM (SELECT * FROM gaps UNION ALL SELECT * FROM evs) a
     ORDER BY a.kind = 'event', a.ord, a.channel
$$;

-- Cheap change check for polling (ETag / 304): the current last seq of each channel,
-- read from realtime_channels only, never from event bodies.
CREATE OR REPLACE FUNCTION realtime.positions(p_tenant text, p_channels text[])
RETURNS TABLE (channel text, last_seq bigint, pruned_through bigint)
LANGUAGE sql STABLE AS $$
    SELECT u.ch, coalesce(c.last_seq, 0), coalesce(c.pruned_through, 0)
      FROM unnest(p_channels) WITH ORDINALITY AS u(ch, ord)
      LEFT JOIN realtime.realtime_channels c
             ON c.tenant_id = p_tenant AND c.channel_name = u.ch
     ORDER BY u.ord
$$;
