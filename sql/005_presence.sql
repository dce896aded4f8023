-- pgcast: presence shared by every transport. A member is one connection in one channel;
-- it expires when it stops heartbeating for the channel type's timeout_ms. Joins and
-- leaves are announced with NOTIFY realtime_presence so that every process can tell
-- its own subscribers (they are not events: they take no position in the channel).

-- {"userId","name","connectionId","joinedAt","lastSeen", ...client data}
CREATE OR REPLACE FUNCTION realtime.presence_member(p realtime.realtime_presence) RETURNS jsonb
LANGUAGE sql IMMUTABLE AS $$
    SELECT coalesce(p.data, '{}'::jsonb) || jsonb_build_object(
        'userId', p.user_id, 'name', p.name, 'connectionId', p.connection_id,
        'joinedAt', realtime.epoch_ms(p.joined_at), 'lastSeen', realtime.epoch_ms(p.last_seen_at))
$$;

CREATE OR REPLACE FUNCTION realtime.presence_announce(p_tenant text, p_channel text, p_type text, p_member jsonb)
RETURNS void LANGUAGE sql AS $$
    SELECT pg_notify('realtime_presence', jsonb_build_object(
        't', p_tenant, 'c', p_channel,
        'm', jsonb_build_object('type', p_type, 'channel', p_channel, 'payload', p_member))::text)
$$;

-- Join or refresh; announces presence.join the first time, presence.update when the
-- data changed. Returns the member.
CREATE OR REPLACE FUNCTION realtime.presence_join(p_tenant text, p_channel text, p_connection_id text,
                                                  p_user_id text, p_name text, p_data jsonb,
                                                  p_instance_id text DEFAULT NULL)
RETURNS jsonb LANGUAGE plpgsql AS $$
DECLARE
    v_timeout integer;
    v_old     realtime.realtime_presence;
    v_row     realtime.realtime_presence;
BEGIN
    PERFORM realtime.check_tenant(p_tenant);
    PERFORM realtime.check_channel(p_channel);
    SELECT timeout_ms INTO v_timeout FROM realtime.heartbeat_for(realtime.channel_type(p_channel));
    SELECT * INTO v_old FROM realtime.realtime_presence
     WHERE tenant_id = p_tenant AND channel = p_channel AND connection_id = p_connection_id AND expires_at > now();
    INSERT INTO realtime.realtime_presence AS p
           (tenant_id, channel, connection_id, user_id, name, data, instance_id, expires_at)
    VALUES (p_tenant, p_channel, p_connection_id, p_user_id, p_name, coalesce(p_data, '{}'), p_instance_id,
            now() + make_interval(secs => v_timeout / 1000.0))
    ON CONFLICT (tenant_id, channel, connection_id) DO UPDATE
       SET user_id = excluded.user_id, name = excluded.name, data = excluded.data,
           instance_id = excluded.instance_id, last_seen_at = now(), expires_at = excluded.expires_at,
           joined_at = CASE WHEN p.expires_at > now() THEN p.joined_at ELSE now() END
    RETURNING * INTO v_row;
    IF v_old.connection_id IS NULL THEN
        PERFORM realtime.presence_announce(p_tenant, p_channel, 'presence.join', realtime.presence_member(v_row));
    ELSIF v_old.data IS DISTINCT FROM v_row.data OR v_old.name IS DISTINCT FROM v_row.name THEN
        PERFORM realtime.presence_announce(p_tenant, p_channel, 'presence.update', realtime.presence_member(v_row));
    END IF;
    RETURN realtime.presence_member(v_row);
END $$;

-- Keeps a member alive. Returns false when it is not a member (expired or never joined).
CREATE OR REPLACE FUNCTION realtime.presence_heartbeat(p_tenant text, p_channel text, p_connection_id text)
RETURNS boolean LANGUAGE plpgsql AS $$
DECLARE
    v_timeout integer;
BEGIN
    SELECT timeout_ms INTO v_timeout FROM realtime.heartbeat_for(realtime.channel_type(p_channel));
    UPDATE realtime.realtime_presence
       SET last_seen_at = now(), expires_at = now() + make_interval(secs => v_timeout / 1000.0)
     WHERE tenant_id = p_tenant AND channel = p_channel AND connection_id = p_connection_id AND expires_at > now();
    RETURN FOUND;
END $$;

CREATE OR REPLACE FUNCTION realtime.presence_leave(p_tenant text, p_channel text, p_connection_id text)
RETURNS boolean LANGUAGE plpgsql AS $$
DECLARE
    v_row realtime.realtime_presence;
BEGIN
    DELETE FROM realtime.realtime_presence
     WHERE tenant_id = p_tenant AND channel = p_channel AND connection_id = p_connection_id
    RETURNING * INTO v_row;
    IF v_row.connection_id IS NOT NULL AND v_row.expires_at > now() THEN
        PERFORM realtime.presence_announce(p_tenant, p_channel, 'presence.leave', realtime.presence_member(v_row));
    END IF;
    RETURN v_row.connection_id IS NOT NULL;
END $$;

CREATE OR REPLACE FUNCTION realtime.presence_members(p_tenant text, p_channel text) RETURNS jsonb
LANGUAGE sql STABLE AS $$
    SELECT coalesce(jsonb_agg(realtime.presence_member(p) ORDER BY p.joined_at, p.connection_id), '[]'::jsonb)
      FROM realtime.realtime_presence p
     WHERE p.tenant_id = p_tenant AND p.channel = p_channel AND p.expires_at > now()
$$;

-- Members whose heartbeats stopped: removed, and their leave announced. Run periodically.
CREATE OR REPLACE FUNCTION realtime.presence_expire() RETURNS integer
LANGUAGE plpgsql AS $$
DECLARE
    r realtime.realtime_presence;
    n integer := 0;
BEGIN
    FOR r IN DELETE FROM realtime.realtime_presence WHERE expires_at <= now() RETURNING * LOOP
        PERFORM realtime.presence_announce(r.tenant_id, r.channel, 'presence.leave', realtime.presence_member(r));
        n := n + 1;
    END LOOP;
    RETURN n;
END $$;
