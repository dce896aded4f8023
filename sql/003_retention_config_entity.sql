-- pgcast: retention, heartbeat-config change notification, the entity trigger.

-- Retention: per channel, delete the oldest events that are older than p_max_age or
-- beyond the newest p_max_per_channel. Always a prefix of the channel's seqs, so what
-- remains has no hole; pruned_through records the cut so readers get an explicit gap.
-- A channel's config may override both: {"retention_count": N, "retention_seconds": S}.
-- Channels whose row a publisher holds right now are skipped this round (SKIP LOCKED):
-- pruning never waits for, nor delays, a publishing transaction.
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
        v_count := coalesce((r.config->>'retention_count')::bigint, p_max_per_channel);
        v_age := coalesce(make_interval(secs => (r.config->>'retention_seconds')::double precision), p_max_age);
        v_cut := r.pruned_through;
        IF v_count IS NOT NULL THEN
            v_cut := greatest(v_cut, r.last_seq - v_count);
        END IF;
        IF v_age IS NOT NULL THEN
            SELECT max(l.seq) INTO v_agecut
              FROM realtime.realtime_events_log l
             WHERE l.tenant_id = r.tenant_id AND l.channel = r.channel_name
               AND l.seq > r.pruned_through
               AND l.published_at < now() - v_age;
            v_cut := greatest(v_cut, coalesce(v_agecut, 0));
        END IF;
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

-- Running processes cache realtime_heartbeat_config and reload it on this notification.
CREATE OR REPLACE FUNCTION realtime.notify_config_change() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    PERFORM pg_notify('realtime_config', TG_TABLE_NAME);
    RETURN NULL;
END $$;

CREATE TRIGGER realtime_heartbeat_config_notify
    AFTER INSERT OR UPDATE OR DELETE OR TRUNCATE ON realtime.realtime_heartbeat_config
    FOR EACH STATEMENT EXECUTE FUNCTION realtime.notify_config_change();

-- The heartbeat settings of a channel type (the 'default' row when it has none).
CREATE OR REPLACE FUNCTION realtime.heartbeat_for(p_channel_type text,
                                                  OUT heartbeat_interval_ms integer,
                                                  OUT timeout_ms integer)
LANGUAGE sql STABLE AS $$
    SELECT h.heartbeat_interval_ms, h.timeout_ms
      FROM realtime.realtime_heartbeat_config h
     WHERE h.channel_type IN (p_channel_type, 'default')
     ORDER BY h.channel_type = 'default'
     LIMIT 1
$$;

-- Entity trigger: attach to an application table to publish entity:created /
-- entity:updated / entity:deleted on entity:{Name} and entity:{Name}:{id}.
--   CREATE TRIGGER tasks_realtime AFTER INSERT OR UPDATE OR DELETE ON tasks
--     FOR EACH ROW EXECUTE FUNCTION realtime.entity_trigger('workspace_id', 'Task', 'id');
-- Arguments: the column holding the tenant (required), the entity name (default: the
-- table's name), the id column (default: id). Runs in the writer's transaction, so the
-- events exist iff the write commits.
CREATE OR REPLACE FUNCTION realtime.entity_trigger() RETURNS trigger
LANGUAGE plpgsql AS $$
DECLARE
    v_tenant_col text := TG_ARGV[0];
    v_entity     text := coalesce(TG_ARGV[1], TG_TABLE_NAME);
    v_id_col     text := coalesce(TG_ARGV[2], 'id');
    v_row        jsonb;
    v_id         text;
    v_type       text;
    v_payload    jsonb;
BEGIN
    IF TG_LEVEL <> 'ROW' THEN
        RAISE EXCEPTION 'pgcast: realtime.entity_trigger must be attached FOR EACH ROW';
    END IF;
    IF v_tenant_col IS NULL THEN
        RAISE EXCEPTION 'pgcast: realtime.entity_trigger needs the tenant column as its first argument';
    END IF;
    v_row := CASE WHEN TG_OP = 'DELETE' THEN to_jsonb(OLD) ELSE to_jsonb(NEW) END;
    IF NOT v_row ? v_tenant_col THEN
        RAISE EXCEPTION 'pgcast: realtime.entity_trigger: table % has no column %', TG_TABLE_NAME, v_tenant_col;
    END IF;
    v_type := 'entity:' || CASE TG_OP WHEN 'INSERT' THEN 'created'
                                      WHEN 'UPDATE' THEN 'updated'
                                      ELSE 'deleted' END;
    v_id := v_row->>v_id_col;
    v_payload := jsonb_build_object('entity', v_entity, 'id', v_row->v_id_col,
                                    'operation', lower(TG_OP), 'record', v_row);
    IF TG_OP = 'UPDATE' THEN
        v_payload := v_payload || jsonb_build_object('old_record', to_jsonb(OLD));
    END IF;
    PERFORM realtime.publish(v_row->>v_tenant_col, 'entity:' || v_entity, v_type, v_payload);
    IF v_id IS NOT NULL THEN
        PERFORM realtime.publish(v_row->>v_tenant_col, 'entity:' || v_entity || ':' || v_id, v_type, v_payload);
    END IF;
    RETURN NULL;
END $$;
