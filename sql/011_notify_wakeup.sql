-- NOTIFY is a wake-up, never data (docs/protocol.md, "NOTIFY is a wake-up").
--
-- Any role that can connect to the database may pg_notify on any channel and LISTEN on
-- any channel: NOTIFY has no privileges. Until now publish sent the event itself
-- (tenant, channel, seq, type and payload) on 'realtime_events' and presence_announce
-- sent the presence message on 'realtime_presence', and every pgcast process delivered
-- what it received. So a role without a single grant could forge events and presence
-- for any tenant, and read every tenant's payloads by listening.
--
-- Now a notification carries only an opaque tag of the channel and a number:
--   realtime_events:   '<tag> <seq>'  the channel has an event at seq (or later)
--   realtime_presence: '<tag> <id>'   realtime_presence_events row id was written
-- tag = hex of the first 16 bytes of sha256(secret || tenant || 0x1f || channel), with
-- the secret below, readable by the owner and the runtime roles only. A process maps
-- the tags of the channels it serves to those channels, and on a notification reads
-- the log (or the presence row) as the runtime role; what it delivers is always what
-- is committed there, built from the row. A forged notification can at most make a
-- process read and find nothing new; a listener learns neither tenant, channel, type
-- nor payload (only that some channel had activity, and how much).

CREATE TABLE realtime.realtime_secret (
    id         boolean PRIMARY KEY DEFAULT true CHECK (id),  -- exactly one row
    secret     bytea NOT NULL CHECK (octet_length(secret) = 32),
    created_at timestamptz NOT NULL DEFAULT now()
);
REVOKE ALL ON realtime.realtime_secret FROM PUBLIC;

-- 32 random bytes. gen_random_uuid() draws from the server's strong random source
-- (pg_strong_random); three of them (366 random bits) hashed make the key.
CREATE OR REPLACE FUNCTION realtime.new_secret() RETURNS bytea
LANGUAGE sql VOLATILE SET search_path = pg_catalog, pg_temp AS $$
    SELECT sha256(convert_to(gen_random_uuid()::text || gen_random_uuid()::text || gen_random_uuid()::text, 'UTF8'))
$$;

INSERT INTO realtime.realtime_secret (secret) VALUES (realtime.new_secret());

-- A new secret: running processes reload it on the 'realtime_config' notification
-- (their channels get new tags, and each reads its channels once, so nothing published
-- around the change is missed). UPDATE rights on the table are the owner's only.
CREATE OR REPLACE FUNCTION realtime.secret_changed() RETURNS trigger
LANGUAGE plpgsql SET search_path = pg_catalog, pg_temp AS $$
BEGIN
    PERFORM pg_notify('realtime_config', 'realtime_secret');
    RETURN NULL;
END $$;

CREATE TRIGGER realtime_secret_changed AFTER INSERT OR UPDATE ON realtime.realtime_secret
    FOR EACH STATEMENT EXECUTE FUNCTION realtime.secret_changed();

-- Run as the owner: UPDATE realtime.realtime_secret SET secret = realtime.new_secret();
-- (SECURITY INVOKER: a runtime role may execute it but has no UPDATE on the table.)
CREATE OR REPLACE FUNCTION realtime.rotate_secret() RETURNS void
LANGUAGE sql VOLATILE SET search_path = pg_catalog, pg_temp AS $$
    UPDATE realtime.realtime_secret SET secret = realtime.new_secret(), created_at = now()
$$;

-- The channel's tag: 32 hex digits. The C side (core/hub.c, hub_tag) computes the same
-- bytes. SECURITY INVOKER: only a role that may read the secret gets an answer.
-- Truncating the digest to 16 bytes also means a tag never reveals sha256's full state
-- (no length extension from a tag).
CREATE OR REPLACE FUNCTION realtime.channel_tag(p_tenant text, p_channel text) RETURNS text
LANGUAGE sql STABLE SET search_path = pg_catalog, pg_temp AS $$
    SELECT encode(substr(sha256(s.secret || convert_to(p_tenant, 'UTF8') || decode('1f', 'hex')
                                || convert_to(p_channel, 'UTF8')), 1, 16), 'hex')
      FROM realtime.realtime_secret s
$$;

-- 010's publish (SECURITY DEFINER, tenant-checked, payload_bytes recorded); the
-- notification is now '<tag> <seq>'.
CREATE OR REPLACE FUNCTION realtime.publish(p_tenant text, p_channel text, p_event_type text, p_payload jsonb)
RETURNS bigint
LANGUAGE plpgsql VOLATILE SECURITY DEFINER
SET search_path = pg_catalog, pg_temp AS $$
DECLARE
    v_seq bigint;
    v_tag text;
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
    INSERT INTO realtime.realtime_events_log (tenant_id, channel, seq, event_type, event_data, published_at,
                                              payload_bytes)
    VALUES (p_tenant, p_channel, v_seq, p_event_type, p_payload, clock_timestamp(),
            octet_length(p_payload::text));

    PERFORM pg_notify('realtime_events', v_tag || ' ' || v_seq);
    RETURN v_seq;
END $$;

-- Presence messages, kept for the processes to read after the notification. Rows are
-- read within a minute of being written (older ones are not delivered) and removed
-- after five (presence_expire, and every 256th announce).
CREATE TABLE realtime.realtime_presence_events (
    id         bigserial PRIMARY KEY,
    tenant_id  text        NOT NULL,
    channel    text        NOT NULL,
    message    jsonb       NOT NULL,
    created_at timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX realtime_presence_events_created ON realtime.realtime_presence_events (created_at);
REVOKE ALL ON realtime.realtime_presence_events FROM PUBLIC;

-- SECURITY DEFINER: the row is written as the owner (the runtime role only reads and
-- prunes the table), and the tag needs the secret.
CREATE OR REPLACE FUNCTION realtime.presence_announce(p_tenant text, p_channel text, p_type text, p_member jsonb)
RETURNS void
LANGUAGE plpgsql VOLATILE SECURITY DEFINER
SET search_path = pg_catalog, pg_temp AS $$
DECLARE
    v_id  bigint;
    v_tag text;
BEGIN
    v_tag := realtime.channel_tag(p_tenant, p_channel);
    IF v_tag IS NULL THEN
        RAISE EXCEPTION USING ERRCODE = '55000',
            MESSAGE = 'pgcast: realtime.realtime_secret has no row (migration 011 creates it)';
    END IF;
    INSERT INTO realtime.realtime_presence_events (tenant_id, channel, message)
    VALUES (p_tenant, p_channel, jsonb_build_object('type', p_type, 'channel', p_channel, 'payload', p_member))
    RETURNING id INTO v_id;
    IF v_id % 256 = 0 THEN
        DELETE FROM realtime.realtime_presence_events WHERE created_at < now() - interval '5 minutes';
    END IF;
    PERFORM pg_notify('realtime_presence', v_tag || ' ' || v_id);
END $$;

-- 005's, and the presence messages older than five minutes go.
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
    DELETE FROM realtime.realtime_presence_events WHERE created_at < now() - interval '5 minutes';
    RETURN n;
END $$;

-- 010's, and: runtime roles read the secret (to tag their channels) and read and prune
-- the presence messages. Publishers and PUBLIC get neither.
CREATE OR REPLACE FUNCTION realtime.apply_grants() RETURNS integer
LANGUAGE plpgsql SET search_path = pg_catalog, pg_temp AS $$
DECLARE
    r realtime.realtime_roles;
    n integer := 0;
BEGIN
    REVOKE ALL ON SCHEMA realtime FROM PUBLIC;
    REVOKE EXECUTE ON ALL FUNCTIONS IN SCHEMA realtime FROM PUBLIC;
    REVOKE ALL ON realtime.realtime_secret, realtime.realtime_presence_events FROM PUBLIC;
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
            -- the key of the notification tags, and the presence messages
            EXECUTE format('GRANT SELECT ON realtime.realtime_secret TO %I', r.role_name);
            EXECUTE format('GRANT SELECT, DELETE ON realtime.realtime_presence_events TO %I', r.role_name);
        ELSE
            -- a publisher keeps nothing but EXECUTE on publish; what an earlier grant
            -- may have given it on these two is taken back
            EXECUTE format('REVOKE ALL ON realtime.realtime_secret, realtime.realtime_presence_events FROM %I',
                           r.role_name);
            EXECUTE format('GRANT EXECUTE ON FUNCTION realtime.publish(text, text, text, jsonb) TO %I', r.role_name);
        END IF;
        n := n + 1;
    END LOOP;
    RETURN n;
END $$;

SELECT realtime.apply_grants();
