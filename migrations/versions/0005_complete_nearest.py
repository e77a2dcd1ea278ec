"""star.nearest always complete, for any k; clear errors from star.nearest and star.compat_apply.

Revision ID: 0005
Revises: 0004
Create Date: 2026-11-29

    hnsw.iterative_scan  strict_order on every search: an HNSW scan also meets index entries of rows that are not
                         visible to the reader (a batch being published into the vintage inserts them before it
                         commits); without it the search beam could fill with those and return fewer than k rows
    exact fallback       still fewer than k rows (more than hnsw.max_scan_tuples invisible entries met): the same
                         query without the index, complete by construction
    k * oversample       computed in bigint (k = 2147483647 on a retired vintage overflowed int4)
    errors               star.nearest on a family that is not an embedding family, and star.compat_apply for a
                         map that is not stored, raise a message naming the fix (were: a missing relation, NULL)
    vintage retired      while a search runs: a table that disappears between the registry lookup and the read
                         is looked up again (retire replaces the table by a view in the same transaction)
"""

from alembic import op

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None

UPGRADE = """
CREATE OR REPLACE FUNCTION star._missing_map(f text, from_v integer, to_v integer) RETURNS real[]
LANGUAGE plpgsql STABLE AS $$
DECLARE
    have text;
BEGIN
    SELECT string_agg(DISTINCT 'v' || from_version || '->v' || to_version, ', ') INTO have
    FROM star.embedding_compat_rows WHERE family = f;
    RAISE EXCEPTION 'star.compat_apply: no stored map % v% -> v% (stored: %); fit one with `star compat fit % --from % --to %`',
        f, from_v, to_v, coalesce(have, 'none for this family'), f, from_v, to_v;
END
$$;

CREATE OR REPLACE FUNCTION star.compat_apply(f text, from_v integer, to_v integer, e vector) RETURNS real[]
LANGUAGE sql STABLE PARALLEL SAFE AS $$
    SELECT coalesce(array_agg((r.b - (r.w <#> e))::real ORDER BY r.i), star._missing_map(f, from_v, to_v))
    FROM star.embedding_compat_rows r
    WHERE r.family = f AND r.from_version = from_v AND r.to_version = to_v
$$;

CREATE OR REPLACE FUNCTION star._nearest_once(family text, vintage integer, entity_id bigint, k integer,
                                              oversample integer, OUT ids bigint[], OUT coss double precision[])
LANGUAGE plpgsql VOLATILE AS $$
DECLARE
    v record;
    key text;
    tbl text;
    q vector;
    avail text;
    wanted bigint;
    search text;
    exact text;
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
    EXECUTE format('SELECT embedding FROM %s WHERE %I = $1 AND is_current', tbl, key) INTO q USING entity_id;
    IF q IS NULL THEN
        RAISE EXCEPTION 'star.nearest: % % has no current vector in %', key, entity_id, tbl;
    END IF;
    wanted := k::bigint * CASE WHEN v.served_from IS NULL THEN 1 ELSE oversample END;
    PERFORM set_config('hnsw.ef_search', least(greatest(wanted, 100), 1000)::text, true);
    PERFORM set_config('hnsw.iterative_scan', 'strict_order', true);
    PERFORM set_config('hnsw.max_scan_tuples', least(greatest(wanted * 2, 20000), 2147483647)::text, true);
    -- %s: the ORDER BY expression; the index serves `embedding <=> $1`, never `(embedding <=> $1) + 0`
    IF v.served_from IS NULL THEN
        search := format('SELECT array_agg(cid ORDER BY d, cid), array_agg(1 - d ORDER BY d, cid) FROM ('
                         'SELECT %I AS cid, embedding <=> $1 AS d FROM %s WHERE is_current AND %I <> $2 '
                         'ORDER BY %%s LIMIT $3) s', key, tbl, key);
    ELSE
        search := format(
            'SELECT array_agg(cid ORDER BY cos DESC, cid), array_agg(cos ORDER BY cos DESC, cid) FROM ('
            'SELECT c.cid, 1 - (star.compat_apply($5, $6, $7, c.embedding)::vector <=> t.e) AS cos FROM '
            '(SELECT %I AS cid, embedding FROM %s WHERE is_current AND %I <> $2 ORDER BY %%s LIMIT $3::bigint * $4) c, '
            '(SELECT star.compat_apply($5, $6, $7, $1)::vector AS e) t ORDER BY cos DESC LIMIT $3) s', key, tbl, key);
    END IF;
    EXECUTE format(search, 'embedding <=> $1') INTO ids, coss
        USING q, entity_id, k, oversample, _nearest_once.family, v.served_from, _nearest_once.vintage;
    IF coalesce(cardinality(ids), 0) < k THEN
        -- the index scan stopped short (entries of rows not visible to this reader): the exact scan is complete
        EXECUTE format(search, '(embedding <=> $1) + 0') INTO ids, coss
            USING q, entity_id, k, oversample, _nearest_once.family, v.served_from, _nearest_once.vintage;
    END IF;
END
$$;

CREATE OR REPLACE FUNCTION star.nearest(family text, vintage integer, entity_id bigint, k integer DEFAULT 10,
                                        oversample integer DEFAULT 10)
RETURNS TABLE (id bigint, cosine double precision) LANGUAGE plpgsql VOLATILE AS $$
DECLARE
    r record;
BEGIN
    IF k IS NULL OR k < 1 OR oversample IS NULL OR oversample < 1 THEN
        RAISE EXCEPTION 'star.nearest: k = % and oversample = % must both be >= 1, e.g. star.nearest(''%'', %, %, 10)',
            k, oversample, nearest.family, nearest.vintage, nearest.entity_id;
    END IF;
    FOR attempt IN 1..3 LOOP
        BEGIN
            r := star._nearest_once(nearest.family, nearest.vintage, nearest.entity_id, k, oversample);
            RETURN QUERY SELECT * FROM unnest(r.ids, r.coss);
            RETURN;
        EXCEPTION WHEN undefined_table THEN
            IF attempt = 3 THEN
                RAISE;
            END IF;  -- retired meanwhile: look the vintage up again
        END;
    END LOOP;
END
$$;
"""

DOWNGRADE = """
DROP FUNCTION IF EXISTS star._nearest_once(text, integer, bigint, integer, integer);
CREATE OR REPLACE FUNCTION star.compat_apply(f text, from_v integer, to_v integer, e vector) RETURNS real[]
LANGUAGE sql STABLE PARALLEL SAFE AS $$
    SELECT array_agg((r.b - (r.w <#> e))::real ORDER BY r.i)
    FROM star.embedding_compat_rows r
    WHERE r.family = f AND r.from_version = from_v AND r.to_version = to_v
$$;
DROP FUNCTION IF EXISTS star._missing_map(text, integer, integer);
"""


def upgrade() -> None:
    op.execute(UPGRADE)


def downgrade() -> None:
    """Back to 0003's star.nearest and 0002's star.compat_apply."""
    import importlib.util
    from pathlib import Path

    op.execute(DOWNGRADE)
    spec = importlib.util.spec_from_file_location("m0003", Path(__file__).with_name("0003_nearest_any_k.py"))
    m0003 = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(m0003)
    op.execute(m0003.UPGRADE)
