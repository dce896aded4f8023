-- Milliseconds since the epoch, as in 002, now from an interval: extract() of a
-- timestamptz is only STABLE, so 002's body kept this IMMUTABLE function from being
-- inlined, and every query calling it (realtime.read, publish, presence) parsed and
-- planned it on its own. timestamptz - 'epoch' and extract() of an interval are
-- immutable; the value is the same.
CREATE OR REPLACE FUNCTION realtime.epoch_ms(p_ts timestamptz) RETURNS bigint
LANGUAGE sql IMMUTABLE STRICT PARALLEL SAFE AS $$
    SELECT floor(extract(epoch FROM p_ts - timestamptz 'epoch') * 1000)::bigint
$$;

-- realtime.read, unchanged in what it returns, now with a plan PostgreSQL keeps.
--
-- As an inlined SQL function (002) every call was planned afresh (~0.5 ms, most of a
-- poll request's database time): its generic plan is estimated for ten channels (the
-- planner's guess for unnest of a parameter) against one in a custom plan, so even a
-- prepared statement never switched to it. PL/pgSQL keeps the statement's plan for the
-- session, and plan_cache_mode on the function makes that the generic one from the
-- first call; the plan is the same nested loop over the primary key either way.
-- Still one statement, so gap rows and events come from one snapshot.
CREATE OR REPLACE FUNCTION realtime.read(p_tenant text, p_channels text[], p_after bigint[],
                                         p_limit integer DEFAULT 100)
RETURNS TABLE (kind text, channel text, seq bigint, gap_to bigint,
               event_type text, payload text, ts_ms bigint)
LANGUAGE plpgsql STABLE
SET plan_cache_mode = force_generic_plan AS $$
#variable_conflict use_column
BEGIN
    RETURN QUERY
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
     ORDER BY a.kind = 'event', a.ord, a.channel;
END $$;

-- The positions of many (tenant, channel) pairs at once, for the poll handler's batched
-- change check (poll/positions.c): one row per pair that has a channel row, with its
-- ordinal in the arrays; pairs never published to have no row (position 0). Read from
-- realtime_channels only, never from event bodies. Same plan reasoning as read above.
CREATE OR REPLACE FUNCTION realtime.positions_of(p_tenants text[], p_channels text[])
RETURNS TABLE (ord bigint, last_seq bigint, pruned_through bigint)
LANGUAGE plpgsql STABLE
SET plan_cache_mode = force_generic_plan AS $$
#variable_conflict use_column
BEGIN
    RETURN QUERY
    SELECT u.ord, c.last_seq, c.pruned_through
      FROM unnest(p_tenants, p_channels) WITH ORDINALITY AS u(tenant, ch, ord)
      JOIN realtime.realtime_channels c ON c.tenant_id = u.tenant AND c.channel_name = u.ch;
END $$;
