-- Least privilege: an owner, a runtime role, publisher roles (docs/deploy.md, "Database
-- roles").
--
-- * The owner runs the migrations and owns every object of schema realtime.
-- * A runtime role (the handlers and the sidecar) gets exactly what they use: the
--   functions, reading the log and channel positions, pruning, presence, their own
--   instance rows and connection stats. It cannot write events except through publish.
-- * A publisher role gets nothing but EXECUTE on realtime.publish, which runs as the
--   owner (SECURITY DEFINER, search_path pinned) and so needs no table rights; it may be
--   limited to listed tenants.
-- PUBLIC gets nothing: no USAGE on the schema, no EXECUTE on its functions.
--
-- Roles are recorded in realtime_roles by pgcast-migrate (--runtime-role,
-- --publisher-role [--tenants]); realtime.apply_grants() grants what each kind has, and
-- pgcast-migrate runs it after every migration run, so functions added later are
-- covered too.

CREATE TABLE realtime.realtime_roles (
    role_name name PRIMARY KEY,
    kind      text NOT NULL CHECK (kind IN ('runtime', 'publisher')),
    tenants   text[]  -- publisher: the tenants it may publish to; NULL = any
);

-- A publisher limited to listed tenants may publish to those only. The role is the
-- session's login role (session_user) and what it is a member of: inside a SECURITY
-- DEFINER function current_user is the owner. Superusers, runtime roles and unlimited
-- publishers are never limited.
CREATE OR REPLACE FUNCTION realtime.check_publisher_tenant(p_tenant text) RETURNS void
LANGUAGE plpgsql STABLE SET search_path = pg_catalog, pg_temp AS $$
BEGIN
    IF NOT EXISTS (SELECT 1 FROM realtime.realtime_roles r WHERE r.tenants IS NOT NULL) THEN
        RETURN;  -- the common case: nobody is limited (one look at a tiny table)
    END IF;
    IF NOT EXISTS (SELECT 1 FROM realtime.realtime_roles r
                    WHERE r.tenants IS NOT NULL AND pg_has_role(session_user, r.role_name, 'MEMBER'))
       OR (SELECT rolsuper FROM pg_roles WHERE rolname = session_user)
       OR EXISTS (SELECT 1 FROM realtime.realtime_roles r
                   WHERE pg_has_role(session_user, r.role_name, 'MEMBER')
                     AND (r.kind = 'runtime' OR r.tenants IS NULL OR p_tenant = ANY (r.tenants))) THEN
        RETURN;
    END IF;
    RAISE EXCEPTION USING ERRCODE = '42501',
        MESSAGE = format('pgcast: role %s may not publish to tenant %s', session_user, quote_literal(left(p_tenant, 60)));
END $$;

-- 008's publish (it records payload_bytes), now SECURITY DEFINER and tenant-checked.
CREATE OR REPLACE FUNCTION realtime.publish(p_tenant text, p_channel text, p_event_type text, p_payload jsonb)
RETURNS bigint
LANGUAGE plpgsql VOLATILE SECURITY DEFINER
SET search_path = pg_catalog, pg_temp AS $$
DECLARE
    v_seq  bigint;
    v_ts   timestamptz;
    v_head text;
    v_body text;
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

    INSERT INTO realtime.realtime_channels AS c
           (tenant_id, channel_name, channel_type, entity_id, last_seq)
    VALUES (p_tenant, p_channel, realtime.channel_type(p_channel),
            realtime.channel_entity_id(p_channel), 1)
    ON CONFLICT (tenant_id, channel_name) DO UPDATE
        SET last_seq = c.last_seq + 1, last_activity_at = now()
    RETURNING c.last_seq INTO v_seq;

    -- Taken after the row lock, so timestamps rise with seq.
    v_ts := clock_timestamp();
    v_body := p_payload::text;
    INSERT INTO realtime.realtime_events_log (tenant_id, channel, seq, event_type, event_data, published_at,
                                              payload_bytes)
    VALUES (p_tenant, p_channel, v_seq, p_event_type, p_payload, v_ts, octet_length(v_body));

    v_head := json_build_object('t', p_tenant, 'c', p_channel, 's', v_seq,
                                'ms', realtime.epoch_ms(v_ts), 'e', p_event_type)::text;
    IF octet_length(v_head) + 1 + octet_length(v_body) <= 7900 THEN
        PERFORM pg_notify('realtime_events', v_head || E'\n' || v_body);
    ELSE
        PERFORM pg_notify('realtime_events', v_head);
    END IF;
    RETURN v_seq;
END $$;

-- What each recorded role may do; idempotent. Run by pgcast-migrate after migrations.
CREATE OR REPLACE FUNCTION realtime.apply_grants() RETURNS integer
LANGUAGE plpgsql SET search_path = pg_catalog, pg_temp AS $$
DECLARE
    r realtime.realtime_roles;
    n integer := 0;
BEGIN
    REVOKE ALL ON SCHEMA realtime FROM PUBLIC;
    REVOKE EXECUTE ON ALL FUNCTIONS IN SCHEMA realtime FROM PUBLIC;
    FOR r IN SELECT * FROM realtime.realtime_roles ORDER BY role_name LOOP
        IF NOT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = r.role_name) THEN
            RAISE WARNING 'pgcast: role % is recorded in realtime.realtime_roles but does not exist', r.role_name;
            CONTINUE;
        END IF;
        EXECUTE format('GRANT USAGE ON SCHEMA realtime TO %I', r.role_name);
        IF r.kind = 'runtime' THEN
            EXECUTE format('GRANT EXECUTE ON ALL FUNCTIONS IN SCHEMA realtime TO %I', r.role_name);
            EXECUTE format('GRANT SELECT ON realtime.realtime_heartbeat_config TO %I', r.role_name);
            -- positions and reads; prune moves pruned_through and deletes old events
            EXECUTE format('GRANT SELECT, UPDATE ON realtime.realtime_channels TO %I', r.role_name);
            EXECUTE format('GRANT SELECT, DELETE ON realtime.realtime_events_log TO %I', r.role_name);
            EXECUTE format('GRANT SELECT, INSERT, UPDATE, DELETE ON realtime.realtime_instances, '
                           'realtime.realtime_presence TO %I', r.role_name);
            EXECUTE format('GRANT SELECT, INSERT, UPDATE ON realtime.realtime_connection_stats TO %I', r.role_name);
            EXECUTE format('GRANT USAGE ON SEQUENCE realtime.realtime_connection_stats_id_seq TO %I', r.role_name);
        ELSE
            EXECUTE format('GRANT EXECUTE ON FUNCTION realtime.publish(text, text, text, jsonb) TO %I', r.role_name);
        END IF;
        n := n + 1;
    END LOOP;
    RETURN n;
END $$;

-- Pruning: one bad row must not stop it for everyone. A log row above its channel's
-- last_seq (only a role with raw table rights can write one) is never counted as pruned
-- (pruned_through stays <= last_seq, as the table's CHECK wants), and a channel config
-- whose retention values are not numbers is ignored (the defaults apply) instead of
-- failing the cast. (No per-channel exception block: a subtransaction per channel would
-- cost every concurrent snapshot once there are more than 64.)
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
    v_n      bigint;
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
            SELECT max(l.seq) INTO v_agecut
              FROM realtime.realtime_events_log l
             WHERE l.tenant_id = r.tenant_id AND l.channel = r.channel_name
               AND l.seq > r.pruned_through AND l.seq <= r.last_seq
               AND l.published_at < now() - v_age;
            v_cut := greatest(v_cut, coalesce(v_agecut, 0));
        END IF;
        v_cut := least(v_cut, r.last_seq);
        IF v_cut > r.pruned_through THEN
            DELETE FROM realtime.realtime_events_log l
             WHERE l.tenant_id = r.tenant_id AND l.channel = r.channel_name AND l.seq <= v_cut;
            GET DIAGNOSTICS v_n = ROW_COUNT;
            v_total := v_total + v_n;
            UPDATE realtime.realtime_channels SET pruned_through = v_cut WHERE id = r.id;
        END IF;
    END LOOP;
    RETURN v_total;
END $$;

SELECT realtime.apply_grants();
