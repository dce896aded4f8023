-- pgcast schema: the one shared state of every handler and sidecar.
-- Table names follow the system pgcast replaces (SPEC §6).

CREATE SCHEMA IF NOT EXISTS realtime;

-- One row per (tenant, channel). last_seq is the per-channel counter: publish()
-- increments it under the row lock, which it keeps until commit, so positions are
-- handed out gap-free and in commit order (a sequence would hand them out at insert
-- time and a tailing reader could skip a late commit).
CREATE TABLE realtime.realtime_channels (
    id               bigserial PRIMARY KEY,
    tenant_id        text        NOT NULL,
    channel_name     text        NOT NULL,
    channel_type     text        NOT NULL,
    entity_id        text,
    config           jsonb       NOT NULL DEFAULT '{}'::jsonb,
    is_active        boolean     NOT NULL DEFAULT true,
    last_seq         bigint      NOT NULL DEFAULT 0,
    -- every seq <= pruned_through has been removed by retention; readers asking for
    -- older positions get an explicit gap (SPEC §2).
    pruned_through   bigint      NOT NULL DEFAULT 0,
    created_at       timestamptz NOT NULL DEFAULT now(),
    last_activity_at timestamptz NOT NULL DEFAULT now(),
    UNIQUE (tenant_id, channel_name),
    CHECK (tenant_id <> ''),
    CHECK (pruned_through <= last_seq)
);

CREATE TABLE realtime.realtime_heartbeat_config (
    channel_type          text PRIMARY KEY,
    heartbeat_interval_ms integer NOT NULL CHECK (heartbeat_interval_ms BETWEEN 100 AND 3600000),
    timeout_ms            integer NOT NULL CHECK (timeout_ms >= heartbeat_interval_ms),
    updated_at            timestamptz NOT NULL DEFAULT now()
);

-- 'default' applies to every channel type without a row of its own.
INSERT INTO realtime.realtime_heartbeat_config (channel_type, heartbeat_interval_ms, timeout_ms) VALUES
    ('project',      30000,  90000),
    ('session',      30000,  90000),
    ('organization', 60000, 180000),
    ('user',         30000,  90000),
    ('system',       60000, 180000),
    ('default',      30000,  90000);

-- The event log. NOTIFY only wakes listeners; this table is the truth every resume,
-- reconnect and restart reads from.
CREATE TABLE realtime.realtime_events_log (
    id           bigserial,
    tenant_id    text        NOT NULL,
    channel      text        NOT NULL,
    seq          bigint      NOT NULL,
    event_type   text        NOT NULL,
    event_data   jsonb       NOT NULL,
    published_at timestamptz NOT NULL DEFAULT clock_timestamp(),
    PRIMARY KEY (tenant_id, channel, seq)
);
CREATE INDEX realtime_events_log_published_at ON realtime.realtime_events_log (published_at);

-- Every running pgcast process registers here and refreshes last_seen_at; rows of a
-- process that stopped refreshing are swept by the others (its connections closed,
-- its presence members removed).
CREATE TABLE realtime.realtime_instances (
    instance_id  text PRIMARY KEY,
    kind         text        NOT NULL,
    hostname     text        NOT NULL,
    pid          integer     NOT NULL,
    started_at   timestamptz NOT NULL DEFAULT now(),
    last_seen_at timestamptz NOT NULL DEFAULT now()
);

CREATE TABLE realtime.realtime_connection_stats (
    id                bigserial PRIMARY KEY,
    connection_id     text        NOT NULL,
    instance_id       text,
    tenant_id         text,
    user_id           text,
    transport         text        NOT NULL,
    channel           text,
    client_info       jsonb       NOT NULL DEFAULT '{}'::jsonb,
    connected_at      timestamptz NOT NULL DEFAULT now(),
    disconnected_at   timestamptz,
    disconnect_reason text,
    last_heartbeat_at timestamptz NOT NULL DEFAULT now(),
    message_count     bigint      NOT NULL DEFAULT 0
);
CREATE INDEX realtime_connection_stats_conn ON realtime.realtime_connection_stats (connection_id);
CREATE INDEX realtime_connection_stats_open ON realtime.realtime_connection_stats (instance_id)
    WHERE disconnected_at IS NULL;

-- Presence: one row per (tenant, channel, connection). Members of WebSocket
-- connections and of polling clients live side by side.
CREATE TABLE realtime.realtime_presence (
    tenant_id     text        NOT NULL,
    channel       text        NOT NULL,
    connection_id text        NOT NULL,
    user_id       text        NOT NULL,
    name          text,
    data          jsonb       NOT NULL DEFAULT '{}'::jsonb,
    instance_id   text,
    joined_at     timestamptz NOT NULL DEFAULT now(),
    last_seen_at  timestamptz NOT NULL DEFAULT now(),
    expires_at    timestamptz NOT NULL,
    PRIMARY KEY (tenant_id, channel, connection_id)
);
CREATE INDEX realtime_presence_expires ON realtime.realtime_presence (expires_at);
