-- The event log partitioned by time; retention drops whole partitions (docs/operations.md,
-- "Retention").
--
-- Pruning by DELETE wrote and vacuumed as much as the inserts had: at 10,000 events/s
-- the log gains 864 million rows a day, and every one of them was deleted again row by
-- row. Now:
--
-- * realtime_events_log is partitioned by RANGE (published_at), one partition per
--   interval (realtime_log_config: from an hour to a week, chosen from the retention
--   age when not set). realtime_log_partitions lists them with their bounds.
-- * realtime.prune moves each channel's cut exactly as before (a prefix of its
--   positions, by count and by age, recorded in realtime_channels.pruned_through) but
--   deletes no row: a reader never gets a row at or below pruned_through (read starts
--   after it and reports the gap), so a pruned row is already gone for every reader.
-- * A partition is dropped (DROP TABLE: no per-row WAL, nothing to vacuum) once no
--   event in it can be read any more: every row of it is at or below its channel's
--   pruned_through (or above its last_seq: a row written by hand, never published).
--   Since gap and pruned_through are decided by the cut alone, what a reader gets is the
--   same as before, whatever the partition bounds.
-- * Partitions are created ahead of time by prune (realtime.log_maintain), and by
--   publish when the one for its timestamp is missing (no maintenance running): CREATE
--   + ATTACH, which takes only SHARE UPDATE EXCLUSIVE on the log, so neither reads nor
--   publishes wait for it; concurrent creators are serialised by an advisory lock.
-- * Seq is assigned as before (the channel row's lock), so a channel's positions stay
--   unique and in commit order. Each partition has the primary key (tenant_id, channel,
--   seq) the table had (a key on the partitioned table would have to contain
--   published_at), and realtime.read walks that index in every partition.
--
-- The existing table is not rewritten: it becomes the first partition, covering
-- everything up to the end of the current day, with all its rows, indexes and
-- privileges. Attaching it reads it once to check the bound (no write, no WAL); a very
-- large log can be checked beforehand without stopping publishers (docs/operations.md,
-- "Partitioning an existing log"), and then this migration takes milliseconds.

-- Partition interval. partition_interval NULL: chosen by prune from its retention age
-- (auto_interval: the shortest of 1, 2, 3, 4, 6, 8, 12 hours, 1, 2, 3, 7 days that holds
-- the age in at most 8 partitions; daily without an age). A read probes every partition,
-- and past about 15 partitions each read costs several times more (measured: 150 us of
-- CPU with 3 to 15 partitions, 350 us with 21, 650 us with 50). premake: how many
-- intervals ahead prune keeps partitions ready.
CREATE TABLE realtime.realtime_log_config (
    id                 boolean PRIMARY KEY DEFAULT true CHECK (id),  -- exactly one row
    partition_interval interval CHECK (partition_interval BETWEEN interval '1 minute' AND interval '7 days'
                                       AND extract(month FROM partition_interval) = 0
                                       AND extract(year FROM partition_interval) = 0),
    auto_interval      interval NOT NULL DEFAULT interval '1 day',
    premake            integer  NOT NULL DEFAULT 2 CHECK (premake BETWEEN 0 AND 48)
);
INSERT INTO realtime.realtime_log_config DEFAULT VALUES;

-- The partitions of realtime_events_log: [lo, hi) of published_at; lo NULL = from the
-- beginning (the table as it was before this migration).
CREATE TABLE realtime.realtime_log_partitions (
    part_name  name PRIMARY KEY,
    lo         timestamptz,
    hi         timestamptz NOT NULL,
    created_at timestamptz NOT NULL DEFAULT now(),
    CHECK (lo IS NULL OR lo < hi)
);
CREATE INDEX realtime_log_partitions_hi ON realtime.realtime_log_partitions (hi);
REVOKE ALL ON realtime.realtime_log_config, realtime.realtime_log_partitions FROM PUBLIC;

-- The start of the interval p_iv (whole seconds, no months) holding p_ts, on a grid from
-- the epoch: days start at 00:00 UTC. (date_bin would need PostgreSQL 14.)
CREATE OR REPLACE FUNCTION realtime.log_bin(p_ts timestamptz, p_iv interval) RETURNS timestamptz
LANGUAGE sql IMMUTABLE STRICT PARALLEL SAFE AS $$
    SELECT to_timestamp(floor(extract(epoch FROM p_ts) / extract(epoch FROM p_iv)) * extract(epoch FROM p_iv))
$$;

-- The table becomes the first partition ------------------------------------------------
DO $$
DECLARE
    v_bound  timestamptz;
    v_def    text;
    v_maxts  timestamptz;
BEGIN
    -- A bound checked beforehand (docs/operations.md): a validated
    -- CHECK (published_at < '...') named realtime_events_log_partition_bound.
    SELECT pg_get_constraintdef(oid) INTO v_def
      FROM pg_constraint
     WHERE conrelid = 'realtime.realtime_events_log'::regclass
       AND conname = 'realtime_events_log_partition_bound' AND contype = 'c' AND convalidated;
    IF v_def IS NOT NULL THEN
        v_bound := substring(v_def FROM '^CHECK \(\(published_at < ''([^'']+)''::timestamp with time zone\)\)$')::timestamptz;
        IF v_bound IS NULL THEN
            RAISE EXCEPTION 'pgcast: constraint realtime_events_log_partition_bound must be CHECK (published_at < ''<timestamptz>''), it is %', v_def;
        END IF;
    ELSE
        SELECT max(published_at) INTO v_maxts FROM realtime.realtime_events_log;
        v_bound := realtime.log_bin(greatest(now(), coalesce(v_maxts, now())), interval '1 day') + interval '1 day';
    END IF;

    ALTER TABLE realtime.realtime_events_log RENAME TO realtime_events_log_initial;
    ALTER TABLE realtime.realtime_events_log_initial RENAME CONSTRAINT realtime_events_log_pkey
        TO realtime_events_log_initial_pkey;
    ALTER INDEX realtime.realtime_events_log_published_at RENAME TO realtime_events_log_initial_published_at;

    CREATE TABLE realtime.realtime_events_log (
        id            bigint      NOT NULL DEFAULT nextval('realtime.realtime_events_log_id_seq'),
        tenant_id     text        NOT NULL,
        channel       text        NOT NULL,
        seq           bigint      NOT NULL,
        event_type    text        NOT NULL,
        event_data    jsonb       NOT NULL,
        published_at  timestamptz NOT NULL DEFAULT clock_timestamp(),
        payload_bytes integer
    ) PARTITION BY RANGE (published_at);
    -- ids keep rising across the change: read orders events by id
    ALTER SEQUENCE realtime.realtime_events_log_id_seq OWNED BY realtime.realtime_events_log.id;

    EXECUTE format('ALTER TABLE realtime.realtime_events_log ATTACH PARTITION realtime.realtime_events_log_initial '
                   'FOR VALUES FROM (MINVALUE) TO (%L)', v_bound);
    INSERT INTO realtime.realtime_log_partitions (part_name, lo, hi)
    VALUES ('realtime_events_log_initial', NULL, v_bound);
END $$;

-- The interval new partitions get.
CREATE OR REPLACE FUNCTION realtime.log_interval() RETURNS interval
LANGUAGE sql STABLE SET search_path = pg_catalog, pg_temp AS $$
    SELECT coalesce(partition_interval, auto_interval) FROM realtime.realtime_log_config
$$;

-- The partition holding p_ts, created if missing; returns its bounds (lo NULL: from the
-- beginning). Only for a time near now (publish's timestamp, or up to premake intervals
-- ahead), so no caller can fill the catalog with partitions.
--
-- SECURITY DEFINER: the partitions belong to the owner of the log. Creating one is
-- CREATE TABLE + ATTACH PARTITION: SHARE UPDATE EXCLUSIVE on the log, which neither
-- reads nor inserts wait for. Two creators are serialised by an advisory lock; one that
-- cannot see the other's committed partition (a REPEATABLE READ transaction) gets the
-- duplicate error, which is caught. Locking the partition found or made makes this
-- session take it in before its insert is routed (a partition attached after this
-- transaction first touched the log would otherwise be unknown to it).
CREATE OR REPLACE FUNCTION realtime.log_partition_for(p_ts timestamptz, OUT lo timestamptz, OUT hi timestamptz)
LANGUAGE plpgsql VOLATILE SECURITY DEFINER
SET search_path = pg_catalog, pg_temp AS $$
DECLARE
    v_iv    interval := realtime.log_interval();
    v_ahead integer;
    v_now   timestamptz := clock_timestamp();
    v_name  name;
    v_lo    timestamptz;
    v_hi    timestamptz;
BEGIN
    SELECT p.lo, p.hi, p.part_name INTO lo, hi, v_name
      FROM realtime.realtime_log_partitions p
     WHERE (p.lo IS NULL OR p.lo <= p_ts) AND p_ts < p.hi AND to_regclass('realtime.' || quote_ident(p.part_name)) IS NOT NULL
     ORDER BY p.hi LIMIT 1;
    IF FOUND THEN
        -- (attached after this transaction first touched the log, maybe: take it in)
        EXECUTE format('LOCK TABLE realtime.%I IN ROW EXCLUSIVE MODE', v_name);
        RETURN;
    END IF;
    SELECT premake INTO v_ahead FROM realtime.realtime_log_config;
    IF p_ts IS NULL OR p_ts < v_now - v_iv - interval '1 hour' OR p_ts > v_now + (v_ahead + 1) * v_iv THEN
        RAISE EXCEPTION USING ERRCODE = '22023',
            MESSAGE = format('pgcast: no log partition is made for %s (only near the current time)', p_ts);
    END IF;

    PERFORM pg_advisory_xact_lock(hashtextextended('pgcast.realtime_events_log partitions', 7213));
    -- (rows of partitions dropped by hand are stale: ignored here, removed by log_maintain)
    SELECT p.lo, p.hi, p.part_name INTO lo, hi, v_name
      FROM realtime.realtime_log_partitions p
     WHERE (p.lo IS NULL OR p.lo <= p_ts) AND p_ts < p.hi AND to_regclass('realtime.' || quote_ident(p.part_name)) IS NOT NULL
     ORDER BY p.hi LIMIT 1;
    IF NOT FOUND THEN
        -- on the interval's grid, clipped to the neighbours (the interval may have changed)
        v_lo := realtime.log_bin(p_ts, v_iv);
        v_hi := v_lo + v_iv;
        v_lo := greatest(v_lo, (SELECT max(p.hi) FROM realtime.realtime_log_partitions p
                                 WHERE p.hi <= p_ts AND to_regclass('realtime.' || quote_ident(p.part_name)) IS NOT NULL));
        v_hi := least(v_hi, (SELECT min(p.lo) FROM realtime.realtime_log_partitions p
                              WHERE p.lo > p_ts AND to_regclass('realtime.' || quote_ident(p.part_name)) IS NOT NULL));
        v_name := 'realtime_events_log_' || to_char(v_lo AT TIME ZONE 'UTC', 'YYYYMMDD"_"HH24MISS');
        BEGIN
            EXECUTE format('CREATE TABLE realtime.%I (LIKE realtime.realtime_events_log INCLUDING DEFAULTS, '
                           'CONSTRAINT %I PRIMARY KEY (tenant_id, channel, seq))', v_name, v_name || '_pkey');
            EXECUTE format('ALTER TABLE realtime.realtime_events_log ATTACH PARTITION realtime.%I '
                           'FOR VALUES FROM (%L) TO (%L)', v_name, v_lo, v_hi);
            INSERT INTO realtime.realtime_log_partitions AS p (part_name, lo, hi) VALUES (v_name, v_lo, v_hi)
            ON CONFLICT (part_name) DO UPDATE SET lo = excluded.lo, hi = excluded.hi, created_at = now();
            lo := v_lo;
            hi := v_hi;
        EXCEPTION WHEN duplicate_table OR invalid_object_definition THEN
            -- made meanwhile by a transaction this one's snapshot does not show
            lo := NULL;
            hi := NULL;
            v_name := NULL;
        END;
    END IF;
    IF v_name IS NOT NULL THEN
        EXECUTE format('LOCK TABLE realtime.%I IN ROW EXCLUSIVE MODE', v_name);
    END IF;
END $$;

-- 011's publish (SECURITY DEFINER, tenant-checked, payload_bytes, '<tag> <seq>'
-- notification); the event's timestamp is taken first and its partition made if
-- missing. The session remembers the bounds of the partition it last wrote to
-- (pgcast.log_part_lo_ms / _hi_ms), so only the first publish of a session, and the
-- first after an interval ends, looks them up.
CREATE OR REPLACE FUNCTION realtime.publish(p_tenant text, p_channel text, p_event_type text, p_payload jsonb)
RETURNS bigint
LANGUAGE plpgsql VOLATILE SECURITY DEFINER
SET search_path = pg_catalog, pg_temp AS $$
DECLARE
    v_seq bigint;
    v_tag text;
    v_ts  timestamptz;
    v_ms  bigint;
    v_lo  text;
    v_hi  text;
    v_b   record;
BEGIN
    PERFORM realtime.check_tenant(p_tenant);
    PERFORM realtime.check_channel(p_channel);
    PERFORM realtime.check_publisher_tenant(p_tenant);
    IF p_event_type IS NULL OR p_event_type = '' OR octet_length(p_event_type) > 200 THEN
        RAISE EXCEPTION USING ERRCODE = '22023',
            MESSAGE = 'pgcast: event type must be a text of 1-200 bytes';
    END IF;
    IF p_payload IS NULL THEN
        p_payload := '{}'::jsonb;
    END IF;
    v_tag := realtime.channel_tag(p_tenant, p_channel);
    IF v_tag IS NULL THEN
        RAISE EXCEPTION USING ERRCODE = '55000',
            MESSAGE = 'pgcast: realtime.realtime_secret has no row (migration 011 creates it)';
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
    v_ms := realtime.epoch_ms(v_ts);
    v_lo := current_setting('pgcast.log_part_lo_ms', true);
    v_hi := current_setting('pgcast.log_part_hi_ms', true);
    IF v_hi IS NULL OR v_hi = '' OR v_ms >= v_hi::bigint OR v_ms < v_lo::bigint THEN
        v_b := realtime.log_partition_for(v_ts);
        IF v_b.hi IS NOT NULL THEN
            PERFORM set_config('pgcast.log_part_lo_ms', coalesce(realtime.epoch_ms(v_b.lo), -9223372036854775807)::text, false);
            PERFORM set_config('pgcast.log_part_hi_ms', realtime.epoch_ms(v_b.hi)::text, false);
        END IF;
    END IF;
    INSERT INTO realtime.realtime_events_log (tenant_id, channel, seq, event_type, event_data, published_at,
                                              payload_bytes)
    VALUES (p_tenant, p_channel, v_seq, p_event_type, p_payload, v_ts, octet_length(p_payload::text));

    PERFORM pg_notify('realtime_events', v_tag || ' ' || v_seq);
    RETURN v_seq;
END $$;

-- Whether a partition still holds an event a reader can get: a row above its channel's
-- pruned_through and at most its last_seq. Walks the partition's distinct channels
-- through its primary key (one index probe per channel, not a scan of the rows).
CREATE OR REPLACE FUNCTION realtime.log_partition_live(p_part name) RETURNS boolean
LANGUAGE plpgsql STABLE SET search_path = pg_catalog, pg_temp AS $$
DECLARE
    v_live boolean;
BEGIN
    EXECUTE format($q$
        WITH RECURSIVE d AS (
            (SELECT l.tenant_id, l.channel FROM realtime.%1$I l ORDER BY l.tenant_id, l.channel LIMIT 1)
            UNION ALL
            SELECT n.tenant_id, n.channel
              FROM d CROSS JOIN LATERAL (
                   SELECT l.tenant_id, l.channel FROM realtime.%1$I l
                    WHERE (l.tenant_id, l.channel) > (d.tenant_id, d.channel)
                    ORDER BY l.tenant_id, l.channel LIMIT 1) n)
        SELECT EXISTS (
            SELECT 1 FROM d
              LEFT JOIN realtime.realtime_channels c ON c.tenant_id = d.tenant_id AND c.channel_name = d.channel
             WHERE EXISTS (SELECT 1 FROM realtime.%1$I l
                            WHERE l.tenant_id = d.tenant_id AND l.channel = d.channel
                              AND l.seq > coalesce(c.pruned_through, 0) AND l.seq <= coalesce(c.last_seq, 0)))
        $q$, p_part) INTO v_live;
    RETURN v_live;
END $$;

-- Partition upkeep, called by prune at its end: chooses the interval from the retention
-- age (unless configured), makes the partitions of the next premake intervals, and
-- drops every past partition with no readable event left. Returns the partitions
-- dropped.
--
-- A partition is first locked SHARE (inserts into it, which there should be none of,
-- finish or wait; reads go on), then checked with a fresh snapshot, then dropped: DROP
-- takes ACCESS EXCLUSIVE on the log for a moment. lock_timeout bounds every wait (and
-- so how long reads and publishes can queue behind it); a partition whose lock is not
-- had in time is left for the next run. Only in READ COMMITTED, where each statement
-- sees what committed before it.
CREATE OR REPLACE FUNCTION realtime.log_maintain(p_max_age interval DEFAULT NULL)
RETURNS integer
LANGUAGE plpgsql VOLATILE SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
SET lock_timeout = '200ms' AS $$
DECLARE
    v_auto    interval;
    v_iv      interval;
    v_ahead   integer;
    v_dropped integer := 0;
    r         record;
BEGIN
    -- the shortest interval that holds the age in at most 8 partitions (daily without an age)
    v_auto := coalesce((SELECT iv FROM unnest(ARRAY[interval '1 hour', interval '2 hours', interval '3 hours',
                                                    interval '4 hours', interval '6 hours', interval '8 hours',
                                                    interval '12 hours', interval '1 day', interval '2 days',
                                                    interval '3 days', interval '7 days']) iv
                         WHERE p_max_age IS NOT NULL AND extract(epoch FROM p_max_age) <= 8 * extract(epoch FROM iv)
                         ORDER BY iv LIMIT 1),
                       CASE WHEN p_max_age IS NULL THEN interval '1 day' ELSE interval '7 days' END);
    -- (several hosts prune at once: none waits for another's row)
    UPDATE realtime.realtime_log_config SET auto_interval = v_auto
     WHERE id IN (SELECT c.id FROM realtime.realtime_log_config c
                   WHERE c.auto_interval IS DISTINCT FROM v_auto AND c.partition_interval IS NULL
                     FOR UPDATE SKIP LOCKED);
    v_iv := realtime.log_interval();
    SELECT premake INTO v_ahead FROM realtime.realtime_log_config;
    -- rows of partitions dropped by hand
    DELETE FROM realtime.realtime_log_partitions
     WHERE part_name IN (SELECT p.part_name FROM realtime.realtime_log_partitions p
                          WHERE to_regclass('realtime.' || quote_ident(p.part_name)) IS NULL
                            FOR UPDATE SKIP LOCKED);
    FOR i IN 0 .. v_ahead LOOP
        BEGIN
            PERFORM realtime.log_partition_for(clock_timestamp() + i * v_iv);
        EXCEPTION WHEN lock_not_available THEN
            RAISE NOTICE 'pgcast: log partitions are being made by another transaction; left for the next run';
            EXIT;
        END;
    END LOOP;

    IF current_setting('transaction_isolation') <> 'read committed' THEN
        RAISE NOTICE 'pgcast: log partitions are dropped in READ COMMITTED transactions only';
        RETURN 0;
    END IF;
    FOR r IN SELECT p.part_name FROM realtime.realtime_log_partitions p
              WHERE p.hi <= clock_timestamp() ORDER BY p.hi
    LOOP
        BEGIN
            EXECUTE format('LOCK TABLE realtime.%I IN SHARE MODE', r.part_name);
            IF NOT realtime.log_partition_live(r.part_name) THEN
                EXECUTE format('DROP TABLE realtime.%I', r.part_name);
                DELETE FROM realtime.realtime_log_partitions WHERE part_name = r.part_name;
                v_dropped := v_dropped + 1;
            END IF;
        EXCEPTION
            WHEN lock_not_available THEN
                RAISE NOTICE 'pgcast: log partition % is busy; left for the next run', r.part_name;
            WHEN undefined_table THEN
                NULL;  -- dropped meanwhile by another run
        END;
    END LOOP;
    RETURN v_dropped;
END $$;

-- A channel's age cut: the last seq in (p_after, p_last] published before p_time, NULL if
-- none. 010 asked max(seq) with published_at < p_time, which walks the channel's index
-- back over every event newer than the cut, heap row by heap row: a whole retention
-- window of a busy channel, at every prune run. Timestamps rise with seq within a
-- channel (publish takes them after the channel row's lock), so this bisects on seq
-- instead: about log2(events kept) lookups by primary key. Should an event be missing (a
-- row deleted by hand), it falls back to 010's query.
CREATE OR REPLACE FUNCTION realtime.log_age_cut(p_tenant text, p_channel text, p_after bigint, p_last bigint,
                                                p_time timestamptz)
RETURNS bigint
LANGUAGE plpgsql STABLE SET search_path = pg_catalog, pg_temp AS $$
DECLARE
    v_lo  bigint := p_after + 1;
    v_hi  bigint := p_last;
    v_mid bigint;
    v_ts  timestamptz;
BEGIN
    IF v_lo > v_hi THEN
        RETURN NULL;
    END IF;
    SELECT l.published_at INTO v_ts FROM realtime.realtime_events_log l
     WHERE l.tenant_id = p_tenant AND l.channel = p_channel AND l.seq = v_hi;
    IF FOUND AND v_ts < p_time THEN
        RETURN v_hi;
    END IF;
    IF FOUND THEN
        SELECT l.published_at INTO v_ts FROM realtime.realtime_events_log l
         WHERE l.tenant_id = p_tenant AND l.channel = p_channel AND l.seq = v_lo;
        IF FOUND AND v_ts >= p_time THEN
            RETURN NULL;
        END IF;
    END IF;
    -- published_at(v_lo) < p_time <= published_at(v_hi)
    WHILE FOUND AND v_hi - v_lo > 1 LOOP
        v_mid := v_lo + (v_hi - v_lo) / 2;
        SELECT l.published_at INTO v_ts FROM realtime.realtime_events_log l
         WHERE l.tenant_id = p_tenant AND l.channel = p_channel AND l.seq = v_mid;
        IF v_ts < p_time THEN
            v_lo := v_mid;
        ELSE
            v_hi := v_mid;
        END IF;
    END LOOP;
    IF FOUND THEN
        RETURN v_lo;
    END IF;
    RETURN (SELECT max(l.seq) FROM realtime.realtime_events_log l
             WHERE l.tenant_id = p_tenant AND l.channel = p_channel
               AND l.seq > p_after AND l.seq <= p_last AND l.published_at < p_time);
END $$;

-- 010's prune (a bad row or config stops nothing; channels a publisher holds are skipped
-- this run), with the same cuts (the age cut found by bisection, log_age_cut, and only
-- above the count cut), but the events at or below a cut are no longer deleted
-- one by one: moving pruned_through removes them for every reader, and their storage
-- goes with their partition (log_maintain, called at the end). Returns the number of
-- positions newly pruned.
CREATE OR REPLACE FUNCTION realtime.prune(p_max_age interval DEFAULT interval '7 days',
                                          p_max_per_channel bigint DEFAULT 10000)
RETURNS bigint
LANGUAGE plpgsql VOLATILE AS $$
DECLARE
    r        record;
    v_cut    bigint;
    v_agecut bigint;
    v_count  bigint;
    v_age    interval;
    v_total  bigint := 0;
BEGIN
    IF p_max_per_channel IS NOT NULL AND p_max_per_channel < 0 THEN
        RAISE EXCEPTION USING ERRCODE = '22023', MESSAGE = 'pgcast: p_max_per_channel must be >= 0';
    END IF;
    FOR r IN SELECT c.id, c.tenant_id, c.channel_name, c.last_seq, c.pruned_through, c.config
               FROM realtime.realtime_channels c
              WHERE c.last_seq > c.pruned_through
              ORDER BY c.id
                FOR UPDATE SKIP LOCKED
    LOOP
        v_count := CASE WHEN r.config->>'retention_count' ~ '^[0-9]{1,18}$'
                        THEN (r.config->>'retention_count')::bigint ELSE p_max_per_channel END;
        v_age := CASE WHEN r.config->>'retention_seconds' ~ '^[0-9]{1,12}(\.[0-9]{1,6})?$'
                      THEN make_interval(secs => (r.config->>'retention_seconds')::double precision)
                      ELSE p_max_age END;
        v_cut := r.pruned_through;
        IF v_count IS NOT NULL THEN
            v_cut := greatest(v_cut, r.last_seq - v_count);
        END IF;
        IF v_age IS NOT NULL THEN
            v_agecut := realtime.log_age_cut(r.tenant_id, r.channel_name, v_cut, r.last_seq, now() - v_age);
            v_cut := greatest(v_cut, coalesce(v_agecut, 0));
        END IF;
        v_cut := least(v_cut, r.last_seq);
        IF v_cut > r.pruned_through THEN
            v_total := v_total + (v_cut - r.pruned_through);
            UPDATE realtime.realtime_channels SET pruned_through = v_cut WHERE id = r.id;
        END IF;
    END LOOP;
    PERFORM realtime.log_maintain(p_max_age);
    RETURN v_total;
END $$;

-- Make the partitions of the next intervals now, so no publish has to.
SELECT realtime.log_maintain(NULL);

SELECT realtime.apply_grants();
