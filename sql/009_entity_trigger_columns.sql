-- The entity trigger publishes only the columns it is told to, and a row's data never
-- makes the application's write fail.
--
-- Before this, every column of the row went to every subscriber (a password hash
-- included), and an id with characters outside the channel grammar (bob+1@x.com) made
-- realtime.publish raise, which failed the application's own INSERT.
--
--   CREATE TRIGGER tasks_realtime AFTER INSERT OR UPDATE OR DELETE ON tasks
--     FOR EACH ROW EXECUTE FUNCTION realtime.entity_trigger('workspace_id', 'Task', 'id',
--                                                           'id,title,status');
-- Arguments: the tenant column (required), the entity name (default: the table's name),
-- the id column (default: id), and the columns to publish:
--   'a,b,c'        only these columns
--   '-a,-b'        every column but these (e.g. '-password_hash,-api_key')
--   '*'            every column (only for tables with nothing secret)
--   (absent)       the id column alone
-- Channels: entity:{Name} always, entity:{Name}:{encoded id} when the encoded id fits
-- the 200-byte channel limit (realtime.encode_id: clients compute the same name).
-- A row whose tenant is NULL or not a valid tenant, or an entity name outside the
-- grammar, publishes nothing (a WARNING says why); the write itself goes on. A trigger
-- that names a column the table does not have is a configuration error and still fails
-- at its first use, saying which column.

-- An id as a channel segment: bytes outside [A-Za-z0-9.:@/-] (and '_' itself, the
-- escape) become _XX (two upper-case hex digits of each UTF-8 byte), so distinct ids
-- give distinct channels: 'bob+1@x.com' -> 'bob_2B1@x.com', 'a_b' -> 'a_5Fb'.
CREATE OR REPLACE FUNCTION realtime.encode_id(p_id text) RETURNS text
LANGUAGE sql IMMUTABLE STRICT PARALLEL SAFE AS $$
    SELECT coalesce(string_agg(
               CASE WHEN b BETWEEN 48 AND 57 OR b BETWEEN 65 AND 90 OR b BETWEEN 97 AND 122
                         OR b IN (45, 46, 47, 58, 64)          -- - . / : @
                    THEN chr(b)
                    ELSE '_' || upper(lpad(to_hex(b), 2, '0')) END,
               '' ORDER BY i), '')
      FROM generate_series(0, octet_length(p_id) - 1) AS i,
           LATERAL get_byte(convert_to(p_id, 'UTF8'), i) AS b
$$;

-- The row as published: the columns p_spec names (see above).
CREATE OR REPLACE FUNCTION realtime.entity_columns(p_row jsonb, p_spec text, p_id_col text) RETURNS jsonb
LANGUAGE plpgsql IMMUTABLE AS $$
DECLARE
    v_items text[];
    v_out   jsonb := '{}'::jsonb;
    v_item  text;
BEGIN
    IF p_spec IS NULL OR btrim(p_spec) = '' THEN
        RETURN jsonb_build_object(p_id_col, p_row -> p_id_col);
    END IF;
    IF btrim(p_spec) = '*' THEN
        RETURN p_row;
    END IF;
    v_items := ARRAY(SELECT btrim(x) FROM unnest(string_to_array(p_spec, ',')) AS x WHERE btrim(x) <> '');
    IF v_items[1] LIKE '-%' THEN
        v_out := p_row;
        FOREACH v_item IN ARRAY v_items LOOP
            IF v_item NOT LIKE '-%' THEN
                RAISE EXCEPTION 'pgcast: realtime.entity_trigger: columns % mixes kept and excluded columns', p_spec;
            END IF;
            v_item := substr(v_item, 2);
            IF NOT p_row ? v_item THEN
                RAISE EXCEPTION 'pgcast: realtime.entity_trigger: no column % to exclude', v_item;
            END IF;
            v_out := v_out - v_item;
        END LOOP;
        RETURN v_out;
    END IF;
    FOREACH v_item IN ARRAY v_items LOOP
        IF v_item LIKE '-%' THEN
            RAISE EXCEPTION 'pgcast: realtime.entity_trigger: columns % mixes kept and excluded columns', p_spec;
        END IF;
        IF NOT p_row ? v_item THEN
            RAISE EXCEPTION 'pgcast: realtime.entity_trigger: no column % to publish', v_item;
        END IF;
        v_out := v_out || jsonb_build_object(v_item, p_row -> v_item);
    END LOOP;
    RETURN v_out;
END $$;

CREATE OR REPLACE FUNCTION realtime.entity_trigger() RETURNS trigger
LANGUAGE plpgsql AS $$
DECLARE
    v_tenant_col text := TG_ARGV[0];
    v_entity     text := coalesce(TG_ARGV[1], TG_TABLE_NAME);
    v_id_col     text := coalesce(TG_ARGV[2], 'id');
    v_spec       text := TG_ARGV[3];
    v_row        jsonb;
    v_tenant     text;
    v_id         text;
    v_type       text;
    v_payload    jsonb;
    v_channel    text;
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
    IF NOT v_row ? v_id_col THEN
        RAISE EXCEPTION 'pgcast: realtime.entity_trigger: table % has no column %', TG_TABLE_NAME, v_id_col;
    END IF;
    v_tenant := v_row ->> v_tenant_col;
    IF v_tenant IS NULL OR v_tenant = '' OR octet_length(v_tenant) > 200 THEN
        RAISE WARNING 'pgcast: realtime.entity_trigger on %: the row''s tenant (column %) is not a tenant of 1-200 bytes; nothing published',
            TG_TABLE_NAME, v_tenant_col;
        RETURN NULL;
    END IF;
    v_channel := 'entity:' || v_entity;
    IF NOT realtime.valid_channel(v_channel) THEN
        RAISE WARNING 'pgcast: realtime.entity_trigger on %: entity name % is not valid in a channel name; nothing published',
            TG_TABLE_NAME, quote_literal(left(v_entity, 60));
        RETURN NULL;
    END IF;
    v_type := 'entity:' || CASE TG_OP WHEN 'INSERT' THEN 'created'
                                      WHEN 'UPDATE' THEN 'updated'
                                      ELSE 'deleted' END;
    v_id := v_row ->> v_id_col;
    v_payload := jsonb_build_object('entity', v_entity, 'id', v_row -> v_id_col,
                                    'operation', lower(TG_OP),
                                    'record', realtime.entity_columns(v_row, v_spec, v_id_col));
    IF TG_OP = 'UPDATE' THEN
        v_payload := v_payload || jsonb_build_object('old_record', realtime.entity_columns(to_jsonb(OLD), v_spec, v_id_col));
    END IF;
    PERFORM realtime.publish(v_tenant, v_channel, v_type, v_payload);
    IF v_id IS NOT NULL THEN
        v_channel := v_channel || ':' || realtime.encode_id(v_id);
        IF realtime.valid_channel(v_channel) THEN
            PERFORM realtime.publish(v_tenant, v_channel, v_type, v_payload);
        ELSE
            RAISE WARNING 'pgcast: realtime.entity_trigger on %: id too long for a channel name; published on % only',
                TG_TABLE_NAME, 'entity:' || v_entity;
        END IF;
    END IF;
    RETURN NULL;
END $$;
