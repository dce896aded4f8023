-- Presence entries have an owner, presence has caps, and publishing is rate-limited per
-- token subject across every process (docs/security.md, "Abuse limits").
--
-- * A presence entry belongs to the token subject that made it (owner: 'sub:' || sub,
--   or for a token without sub 'addr:' || the client's address) and, through its
--   connection id, to one connection: the sidecar names its WebSockets' ids, the poll
--   handler namespaces an HTTP client's id to its subject ('poll:' || sub || ':' || id).
--   join, heartbeat and leave act only on an entry of the same owner: a join over an
--   entry of another owner is refused (PC403), a heartbeat or a leave of one is "not a
--   member". The owner is never shown in the member JSON.
-- * A new member is refused (PC429) when its owner already has p_max_per_owner live
--   entries in the channel, or the channel has p_max_per_channel.
-- * realtime.publish_limited: a token bucket per (tenant, subject), in an UNLOGGED table
--   (lost on a crash: everyone starts with a full bucket), taken in the same statement
--   as the publish.

ALTER TABLE realtime.realtime_presence ADD COLUMN owner text;

-- 005's functions took no owner; they are dropped so that nothing acts on an entry
-- without naming its owner.
DROP FUNCTION IF EXISTS realtime.presence_join(text, text, text, text, text, jsonb, text);
DROP FUNCTION IF EXISTS realtime.presence_heartbeat(text, text, text);
DROP FUNCTION IF EXISTS realtime.presence_leave(text, text, text);

-- 005's join, plus the owner and the caps. Joins of one channel are serialised by a
-- transaction advisory lock, so two concurrent joins cannot both take the last place.
CREATE OR REPLACE FUNCTION realtime.presence_join(p_tenant text, p_channel text, p_connection_id text,
                                                  p_owner text, p_user_id text, p_name text, p_data jsonb,
                                                  p_instance_id text DEFAULT NULL,
                                                  p_max_per_owner integer DEFAULT 10,
                                                  p_max_per_channel integer DEFAULT 1000)
RETURNS jsonb LANGUAGE plpgsql AS $$
DECLARE
    v_timeout integer;
    v_old     realtime.realtime_presence;
    v_row     realtime.realtime_presence;
    v_n       integer;
BEGIN
    PERFORM realtime.check_tenant(p_tenant);
    PERFORM realtime.check_channel(p_channel);
    IF p_owner IS NULL OR p_owner = '' THEN
        RAISE EXCEPTION USING ERRCODE = '22023', MESSAGE = 'pgcast: a presence entry needs an owner';
    END IF;
    PERFORM pg_advisory_xact_lock(hashtextextended(p_tenant || chr(31) || p_channel, 7205));
    SELECT timeout_ms INTO v_timeout FROM realtime.heartbeat_for(realtime.channel_type(p_channel));
    SELECT * INTO v_old FROM realtime.realtime_presence
     WHERE tenant_id = p_tenant AND channel = p_channel AND connection_id = p_connection_id AND expires_at > now();
    IF v_old.connection_id IS NOT NULL AND v_old.owner IS DISTINCT FROM p_owner THEN
        RAISE EXCEPTION USING ERRCODE = 'PC403',
            MESSAGE = 'pgcast: this presence entry belongs to another subject';
    END IF;
    IF v_old.connection_id IS NULL THEN
        IF p_max_per_owner > 0 THEN
            SELECT count(*) INTO v_n FROM realtime.realtime_presence
             WHERE tenant_id = p_tenant AND channel = p_channel AND owner = p_owner AND expires_at > now();
            IF v_n >= p_max_per_owner THEN
                RAISE EXCEPTION USING ERRCODE = 'PC429',
                    MESSAGE = format('pgcast: at most %s presence entries per subject in a channel', p_max_per_owner);
            END IF;
        END IF;
        IF p_max_per_channel > 0 THEN
            SELECT count(*) INTO v_n FROM (SELECT 1 FROM realtime.realtime_presence
                                            WHERE tenant_id = p_tenant AND channel = p_channel AND expires_at > now()
                                            LIMIT p_max_per_channel) m;
            IF v_n >= p_max_per_channel THEN
                RAISE EXCEPTION USING ERRCODE = 'PC429',
                    MESSAGE = format('pgcast: at most %s presence entries in a channel', p_max_per_channel);
            END IF;
        END IF;
    END IF;
    INSERT INTO realtime.realtime_presence AS p
           (tenant_id, channel, connection_id, owner, user_id, name, data, instance_id, expires_at)
    VALUES (p_tenant, p_channel, p_connection_id, p_owner, p_user_id, p_name, coalesce(p_data, '{}'), p_instance_id,
            now() + make_interval(secs => v_timeout / 1000.0))
    ON CONFLICT (tenant_id, channel, connection_id) DO UPDATE
       SET owner = excluded.owner, user_id = excluded.user_id, name = excluded.name, data = excluded.data,
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

-- 005's heartbeat, for the owner's entry only. false: not a member (expired, never
-- joined, or another owner's).
CREATE OR REPLACE FUNCTION realtime.presence_heartbeat(p_tenant text, p_channel text, p_connection_id text,
                                                       p_owner text)
RETURNS boolean LANGUAGE plpgsql AS $$
DECLARE
    v_timeout integer;
BEGIN
    SELECT timeout_ms INTO v_timeout FROM realtime.heartbeat_for(realtime.channel_type(p_channel));
    UPDATE realtime.realtime_presence
       SET last_seen_at = now(), expires_at = now() + make_interval(secs => v_timeout / 1000.0)
     WHERE tenant_id = p_tenant AND channel = p_channel AND connection_id = p_connection_id
       AND owner = p_owner AND expires_at > now();
    RETURN FOUND;
END $$;

-- 005's leave, for the owner's entry only.
CREATE OR REPLACE FUNCTION realtime.presence_leave(p_tenant text, p_channel text, p_connection_id text,
                                                   p_owner text)
RETURNS boolean LANGUAGE plpgsql AS $$
DECLARE
    v_row realtime.realtime_presence;
BEGIN
    DELETE FROM realtime.realtime_presence
     WHERE tenant_id = p_tenant AND channel = p_channel AND connection_id = p_connection_id AND owner = p_owner
    RETURNING * INTO v_row;
    IF v_row.connection_id IS NOT NULL AND v_row.expires_at > now() THEN
        PERFORM realtime.presence_announce(p_tenant, p_channel, 'presence.leave', realtime.presence_member(v_row));
    END IF;
    RETURN v_row.connection_id IS NOT NULL;
END $$;

-- Token buckets of publish_limited: tokens left at updated_at.
CREATE UNLOGGED TABLE realtime.realtime_rate_buckets (
    tenant_id  text             NOT NULL,
    subject    text             NOT NULL,
    tokens     double precision NOT NULL,
    updated_at timestamptz      NOT NULL,
    PRIMARY KEY (tenant_id, subject)
);
-- No index on updated_at: every publish updates it, and an indexed column would make
-- each update a non-HOT one (new entries in every index). The occasional cleanup scans
-- the table, which holds one row per subject active within the hour.
ALTER TABLE realtime.realtime_rate_buckets SET (fillfactor = 50);
REVOKE ALL ON realtime.realtime_rate_buckets FROM PUBLIC;

-- publish, when the subject's bucket (p_rate tokens a second, at most p_burst) has a
-- token: seq is the new event's, retry_after_ms NULL. Otherwise nothing is published:
-- seq NULL and retry_after_ms how long until the next token. p_rate <= 0: no limit.
-- SECURITY DEFINER: the buckets are the owner's (a runtime role cannot edit its own).
-- A bucket that has refilled is the same as none, so old rows are removed now and then.
CREATE OR REPLACE FUNCTION realtime.publish_limited(p_subject text, p_rate double precision,
                                                    p_burst double precision, p_tenant text, p_channel text,
                                                    p_event_type text, p_payload jsonb,
                                                    OUT seq bigint, OUT retry_after_ms integer)
LANGUAGE plpgsql VOLATILE SECURITY DEFINER
SET search_path = pg_catalog, pg_temp AS $$
DECLARE
    v_now    timestamptz := clock_timestamp();
    v_tokens double precision;
BEGIN
    IF p_rate > 0 THEN
        IF p_subject IS NULL OR p_subject = '' THEN
            RAISE EXCEPTION USING ERRCODE = '22023', MESSAGE = 'pgcast: publish_limited needs a subject';
        END IF;
        p_burst := greatest(coalesce(p_burst, 1), 1);
        INSERT INTO realtime.realtime_rate_buckets AS b (tenant_id, subject, tokens, updated_at)
        VALUES (p_tenant, p_subject, p_burst - 1, v_now)
        ON CONFLICT (tenant_id, subject) DO UPDATE
           SET tokens = least(p_burst, b.tokens + extract(epoch FROM v_now - b.updated_at)::double precision * p_rate) - 1,
               updated_at = v_now
         WHERE least(p_burst, b.tokens + extract(epoch FROM v_now - b.updated_at)::double precision * p_rate) >= 1
        RETURNING b.tokens INTO v_tokens;
        IF NOT FOUND THEN
            SELECT least(p_burst, b.tokens + extract(epoch FROM v_now - b.updated_at)::double precision * p_rate)
              INTO v_tokens
              FROM realtime.realtime_rate_buckets b WHERE b.tenant_id = p_tenant AND b.subject = p_subject;
            retry_after_ms := greatest(1, ceil((1 - coalesce(v_tokens, 0)) / p_rate * 1000))::integer;
            RETURN;
        END IF;
        IF random() < 0.001 THEN
            DELETE FROM realtime.realtime_rate_buckets WHERE updated_at < v_now - interval '1 hour';
        END IF;
    END IF;
    seq := realtime.publish(p_tenant, p_channel, p_event_type, p_payload);
END $$;

REVOKE EXECUTE ON FUNCTION realtime.publish_limited(text, double precision, double precision, text, text, text, jsonb)
    FROM PUBLIC;
REVOKE EXECUTE ON FUNCTION realtime.presence_join(text, text, text, text, text, text, jsonb, text, integer, integer),
                           realtime.presence_heartbeat(text, text, text, text),
                           realtime.presence_leave(text, text, text, text) FROM PUBLIC;

-- The runtime role reaches the new table through publish_limited only, and gets
-- EXECUTE on the new functions from apply_grants (every function of the schema).
SELECT realtime.apply_grants();
