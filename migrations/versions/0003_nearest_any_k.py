"""star.nearest for any k: the HNSW search beam stays within pgvector's limit and iterative scans return the rest.

Revision ID: 0003
Revises: 0002
Create Date: 2026-11-22

    hnsw.ef_search       k (native) or k * oversample (retired), at least 100 and at most 1000 (pgvector's range;
                         0002 set k * oversample unbounded, so k > 100 on a retired vintage was an error)
    hnsw.iterative_scan  strict_order when more than 1000 rows are wanted: the index scan goes on past the beam, in
                         exact distance order, up to hnsw.max_scan_tuples (raised to cover the rows wanted)
    k, oversample        must be >= 1: an error naming the value otherwise
"""

from alembic import op

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None

UPGRADE = """
CREATE OR REPLACE FUNCTION star.nearest(family text, vintage integer, entity_id bigint, k integer DEFAULT 10,
                                        oversample integer DEFAULT 10)
RETURNS TABLE (id bigint, cosine double precision) LANGUAGE plpgsql VOLATILE AS $$
DECLARE
    v record;
    key text;
    tbl text;
    q vector;
    avail text;
    wanted bigint;
BEGIN
    IF k IS NULL OR k < 1 OR oversample IS NULL OR oversample < 1 THEN
        RAISE EXCEPTION 'star.nearest: k = % and oversample = % must both be >= 1, e.g. star.nearest(''%'', %, %, 10)',
            k, oversample, nearest.family, nearest.vintage, nearest.entity_id;
    END IF;
    SELECT ev.entity, ev.status, ev.served_from INTO v FROM star.embedding_versions ev
    WHERE ev.family = nearest.family AND ev.version = nearest.vintage;
    IF NOT FOUND OR v.status NOT IN ('published', 'deprecated', 'retired') THEN
        SELECT string_agg('v' || ev.version || ' (' || ev.status || ')', ', ' ORDER BY ev.version) INTO avail
        FROM star.embedding_versions ev WHERE ev.family = nearest.family;
        RAISE EXCEPTION 'star.nearest: % has no servable vintage %; available: %', nearest.family, nearest.vintage,
            coalesce(avail, 'none (no such family)');
    END IF;
    key := CASE v.entity WHEN 'member' THEN 'member_id' ELSE 'job_id' END;
    tbl := format('star.%I', nearest.family || '_v' || coalesce(v.served_from, nearest.vintage));
    EXECUTE format('SELECT embedding FROM %s WHERE %I = $1 AND is_current', tbl, key) INTO q USING entity_id;
    IF q IS NULL THEN
        RAISE EXCEPTION 'star.nearest: % % has no current vector in %', key, entity_id, tbl;
    END IF;
    wanted := k::bigint * CASE WHEN v.served_from IS NULL THEN 1 ELSE oversample END;
    PERFORM set_config('hnsw.ef_search', least(greatest(wanted, 100), 1000)::text, true);
    IF wanted > 1000 THEN
        PERFORM set_config('hnsw.iterative_scan', 'strict_order', true);
        PERFORM set_config('hnsw.max_scan_tuples', least(greatest(wanted * 2, 20000), 2147483647)::text, true);
    END IF;
    IF v.served_from IS NULL THEN
        RETURN QUERY EXECUTE format('SELECT %I, 1 - (embedding <=> $1) FROM %s WHERE is_current AND %I <> $2 '
                                    'ORDER BY embedding <=> $1 LIMIT $3', key, tbl, key) USING q, entity_id, k;
    ELSE
        RETURN QUERY EXECUTE format(
            'WITH c AS (SELECT %I AS cid, embedding FROM %s WHERE is_current AND %I <> $2 '
            '           ORDER BY embedding <=> $1 LIMIT $3 * $4), '
            '     t AS (SELECT star.compat_apply($5, $6, $7, $1)::vector AS e) '
            'SELECT c.cid, 1 - (star.compat_apply($5, $6, $7, c.embedding)::vector <=> t.e) AS cos '
            'FROM c, t ORDER BY cos DESC LIMIT $3', key, tbl, key)
            USING q, entity_id, k, oversample, nearest.family, v.served_from, nearest.vintage;
    END IF;
END
$$;
"""


def upgrade() -> None:
    op.execute(UPGRADE)


def downgrade() -> None:
    """Back to 0002's star.nearest (its CREATE FUNCTION, as a replacement)."""
    import importlib.util
    from pathlib import Path

    spec = importlib.util.spec_from_file_location("m0002", Path(__file__).with_name("0002_version_lifecycle.py"))
    m0002 = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(m0002)
    text = m0002.UPGRADE
    start = text.index("CREATE FUNCTION star.nearest")
    op.execute(text[start:].replace("CREATE FUNCTION", "CREATE OR REPLACE FUNCTION", 1))
