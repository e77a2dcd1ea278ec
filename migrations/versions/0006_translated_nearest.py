"""star.nearest on a retired vintage at native speed: an HNSW search of its translated vectors.

Revision ID: 0006
Revises: 0005
Create Date: 2026-12-06

    star.<family>_v<j>__translated   a retired vintage's current vectors, star.compat_apply of its serving vintage's
                                     current rows ((<id> PRIMARY KEY, embedding vector(d_j)) + HNSW, cosine); built by
                                     `star versions retire`, kept in step by every publish into the serving vintage
                                     (star/store/translated.py); the upgrade builds it for vintages already retired
    star._nearest_once               a retired vintage: that table, searched like a native one (the query is the
                                     entity's translated vector; hnsw.ef_search from k alone); 0005's guarantees stay
                                     (iterative scan, exact fallback, bigint k, errors, the retry of star.nearest).
                                     Without the table (dropped by hand): 0005's search, k * oversample candidates
                                     from the serving vintage re-ranked through the map (approximate)
"""

from alembic import op

revision = "0006"
down_revision = "0005"
branch_labels = None
depends_on = None

NEAREST_ONCE = """
CREATE OR REPLACE FUNCTION star._nearest_once(family text, vintage integer, entity_id bigint, k integer,
                                              oversample integer, OUT ids bigint[], OUT coss double precision[])
LANGUAGE plpgsql VOLATILE AS $$
DECLARE
    v record;
    key text;
    tbl text;
    own text;
    mapped boolean;
    q vector;
    tq vector;
    avail text;
    wanted bigint;
    search text;
BEGIN
    SELECT ev.entity, ev.status, ev.served_from, ev.config->>'kind' AS kind INTO v FROM star.embedding_versions ev
    WHERE ev.family = _nearest_once.family AND ev.version = _nearest_once.vintage;
    IF NOT FOUND OR v.status NOT IN ('published', 'deprecated', 'retired') THEN
        SELECT string_agg('v' || ev.version || ' (' || ev.status || ')', ', ' ORDER BY ev.version) INTO avail
        FROM star.embedding_versions ev WHERE ev.family = _nearest_once.family;
        RAISE EXCEPTION 'star.nearest: % has no servable vintage %; available: %', _nearest_once.family,
            _nearest_once.vintage, coalesce(avail, 'none (no such family)');
    END IF;
    IF v.kind IS DISTINCT FROM 'text_embedding' AND v.kind IS DISTINCT FROM 'graph_embedding' THEN
        SELECT string_agg(DISTINCT ev.family, ', ') INTO avail FROM star.embedding_versions ev
        WHERE ev.config->>'kind' IN ('text_embedding', 'graph_embedding');
        RAISE EXCEPTION 'star.nearest: % is a % family, not an embedding; search an embedding family: %',
            _nearest_once.family, coalesce(v.kind, 'feature'), coalesce(avail, 'none yet (run star text embed)');
    END IF;
    key := CASE v.entity WHEN 'member' THEN 'member_id' ELSE 'job_id' END;
    tbl := format('star.%I', _nearest_once.family || '_v' || coalesce(v.served_from, _nearest_once.vintage));
    own := 'is_current AND ';
    mapped := v.served_from IS NOT NULL;
    IF mapped AND to_regclass(format('star.%I', _nearest_once.family || '_v' || _nearest_once.vintage
                                                || '__translated')) IS NOT NULL THEN
        tbl := format('star.%I', _nearest_once.family || '_v' || _nearest_once.vintage || '__translated');
        own := '';  -- current rows only, already in the vintage's space: searched like a native vintage
        mapped := false;
    END IF;
    EXECUTE format('SELECT embedding FROM %s WHERE %s%I = $1', tbl, own, key) INTO q USING entity_id;
    IF q IS NULL THEN
        RAISE EXCEPTION 'star.nearest: % % has no current vector in %', key, entity_id,
            format('star.%I', _nearest_once.family || '_v' || coalesce(v.served_from, _nearest_once.vintage))
            || CASE WHEN v.served_from IS NULL THEN '' ELSE ' (it serves retired v' || _nearest_once.vintage || ')' END;
    END IF;
    IF v.served_from IS NULL AND (SELECT c.relkind FROM pg_class c WHERE c.oid = to_regclass(tbl)) <> 'r' THEN
        -- retired while this read waited for the flip: the name is now the view over the serving vintage (a scan
        -- through the map); star.nearest looks the vintage up again and searches its translated copy
        RAISE EXCEPTION USING ERRCODE = 'undefined_table', MESSAGE = 'star.nearest: ' || tbl || ' was just retired';
    END IF;
    wanted := k::bigint * CASE WHEN mapped THEN oversample ELSE 1 END;
    PERFORM set_config('hnsw.ef_search', least(greatest(wanted, 100), 1000)::text, true);
    PERFORM set_config('hnsw.iterative_scan', 'strict_order', true);
    PERFORM set_config('hnsw.max_scan_tuples', least(greatest(wanted * 2, 20000), 2147483647)::text, true);
    -- %s: the ORDER BY expression; the index serves `embedding <=> $1`, never `(embedding <=> $1) + 0`
    IF NOT mapped THEN
        search := format('SELECT array_agg(cid ORDER BY d, cid), array_agg(1 - d ORDER BY d, cid) FROM ('
                         'SELECT %I AS cid, embedding <=> $1 AS d FROM %s WHERE %s%I <> $2 '
                         'ORDER BY %%s LIMIT $3) s', key, tbl, own, key);
    ELSE  -- candidates from the serving vintage's index (the entity's own vector there), ranked in the vintage's space
        tq := star.compat_apply(_nearest_once.family, v.served_from, _nearest_once.vintage, q)::vector;
        search := format(
            'SELECT array_agg(cid ORDER BY cos DESC, cid), array_agg(cos ORDER BY cos DESC, cid) FROM ('
            'SELECT c.cid, 1 - (star.compat_apply($5, $6, $7, c.embedding)::vector <=> $8) AS cos FROM '
            '(SELECT %I AS cid, embedding FROM %s WHERE is_current AND %I <> $2 ORDER BY %%s LIMIT $3::bigint * $4) c '
            'ORDER BY cos DESC LIMIT $3) s', key, tbl, key);
    END IF;
    EXECUTE format(search, 'embedding <=> $1') INTO ids, coss
        USING q, entity_id, k, oversample, _nearest_once.family, v.served_from, _nearest_once.vintage, tq;
    IF coalesce(cardinality(ids), 0) < k THEN
        -- the index scan stopped short (entries of rows not visible to this reader): the exact scan is complete
        EXECUTE format(search, '(embedding <=> $1) + 0') INTO ids, coss
            USING q, entity_id, k, oversample, _nearest_once.family, v.served_from, _nearest_once.vintage, tq;
    END IF;
END
$$;
"""

# what `star versions retire` builds (star/store/translated.py), for the vintages retired before this revision
BACKFILL = """
DO $$
DECLARE
    v record;
    key text;
    t text;
    src text;
    opts text;
BEGIN
    FOR v IN SELECT ev.family, ev.version, ev.entity, ev.dim, ev.served_from FROM star.embedding_versions ev
             WHERE ev.status = 'retired' AND ev.served_from IS NOT NULL
               AND ev.config->>'kind' IN ('text_embedding', 'graph_embedding')
               AND to_regclass(format('star.%I', ev.family || '_v' || ev.served_from)) IS NOT NULL
             ORDER BY 1, 2 LOOP
        key := CASE v.entity WHEN 'member' THEN 'member_id' ELSE 'job_id' END;
        t := v.family || '_v' || v.version || '__translated';
        src := v.family || '_v' || v.served_from;
        EXECUTE format('DROP TABLE IF EXISTS star.%I', t);
        EXECUTE format('CREATE TABLE star.%I AS SELECT %I, star.compat_apply(%L, %s, %s, embedding)::vector(%s) '
                       'AS embedding FROM star.%I WHERE is_current', t, key, v.family, v.served_from, v.version,
                       v.dim, src);
        EXECUTE format('ALTER TABLE star.%I ALTER COLUMN embedding SET NOT NULL, ADD CONSTRAINT %I PRIMARY KEY (%I)',
                       t, t || '_pkey', key);
        SELECT string_agg(o, ', ') INTO opts
        FROM unnest((SELECT reloptions FROM pg_class WHERE oid = to_regclass(format('star.%I', src || '_hnsw')))) o
        WHERE split_part(o, '=', 1) IN ('m', 'ef_construction');
        EXECUTE format('CREATE INDEX %I ON star.%I USING hnsw (embedding vector_cosine_ops)%s', t || '_hnsw', t,
                       CASE WHEN opts IS NULL THEN '' ELSE ' WITH (' || opts || ')' END);
        -- the jobs that replace it on the next retire own it, as they own the vintage tables
        EXECUTE format('ALTER TABLE star.%I OWNER TO %I', t,
                       (SELECT pg_get_userbyid(relowner) FROM pg_class WHERE oid = to_regclass(format('star.%I', src))));
    END LOOP;
END $$;
"""

DROP_TRANSLATED = """
DO $$
DECLARE t regclass;
BEGIN
    FOR t IN SELECT c.oid::regclass FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
             WHERE n.nspname = 'star' AND c.relkind = 'r'
               AND (c.relname LIKE '%\\_\\_translated' OR c.relname LIKE '%\\_\\_translated\\_\\_staging') LOOP
        EXECUTE format('DROP TABLE %s', t);
    END LOOP;
END $$;
"""


def upgrade() -> None:
    op.execute(NEAREST_ONCE)
    op.execute(BACKFILL)


def downgrade() -> None:
    """Back to 0005's star._nearest_once; the translated tables go."""
    import importlib.util
    from pathlib import Path

    spec = importlib.util.spec_from_file_location("m0005", Path(__file__).with_name("0005_complete_nearest.py"))
    m0005 = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(m0005)
    text = m0005.UPGRADE
    start = text.index("CREATE OR REPLACE FUNCTION star._nearest_once")
    end = text.index("CREATE OR REPLACE FUNCTION star.nearest")
    op.execute(text[start:end])
    op.execute(DROP_TRANSLATED)
