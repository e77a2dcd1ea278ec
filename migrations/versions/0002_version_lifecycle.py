"""Version lifecycle, consumers, and serving retired vintages through compatibility maps.

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-22

    embedding_versions.status       building -> candidate -> published -> deprecated -> retired (checked)
    embedding_versions.served_from  for a retired vintage: the version whose rows serve it through a map
    embedding_consumers             (family, version, consumer): who reads a vintage (rankers, services, ...)
    embedding_compat_rows           W of a stored map, one pgvector row per output dimension, so that
                                    star.compat_apply(family, from, to, e) = W e + b runs inside PostgreSQL
                                    (measured: pgvector inner products ~0.46 ms per entity, 30x plain SQL)
    star.compat_apply(...)          real[]: a vector of version `from` in the space of version `to`
    star.nearest(family, vintage, id, k)   similar entities in any servable vintage (docs/versions.md)
"""

from alembic import op

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None

UPGRADE = """
ALTER TABLE star.embedding_versions
    ADD CONSTRAINT embedding_versions_status
        CHECK (status IN ('building', 'candidate', 'published', 'deprecated', 'retired')),
    ADD COLUMN served_from integer,
    ADD CONSTRAINT embedding_versions_served_from CHECK (served_from IS NULL OR status = 'retired');

CREATE TABLE star.embedding_consumers (
    family          text NOT NULL,
    version         integer NOT NULL,
    consumer        text NOT NULL,
    kind            text NOT NULL DEFAULT 'ranker',
    registered_at   timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (family, version, consumer),
    FOREIGN KEY (family, version) REFERENCES star.embedding_versions
);

CREATE TABLE star.embedding_compat_rows (
    family          text NOT NULL,
    from_version    integer NOT NULL,
    to_version      integer NOT NULL,
    i               integer NOT NULL,
    w               vector NOT NULL,
    b               double precision NOT NULL DEFAULT 0,
    PRIMARY KEY (family, from_version, to_version, i),
    FOREIGN KEY (family, from_version, to_version) REFERENCES star.embedding_compat ON DELETE CASCADE
);

CREATE FUNCTION star.compat_apply(f text, from_v integer, to_v integer, e vector) RETURNS real[]
LANGUAGE sql STABLE PARALLEL SAFE AS $$
    SELECT array_agg((r.b - (r.w <#> e))::real ORDER BY r.i)   -- <#> is the negative inner product
    FROM star.embedding_compat_rows r
    WHERE r.family = f AND r.from_version = from_v AND r.to_version = to_v
$$;

-- Nearest entities of the same family in vintage `vintage`. Native vintages: the HNSW index of their own table.
-- Retired vintages: k * oversample candidates from the serving vintage's HNSW index (searched with the entity's
-- own vector there), re-ranked by the cosine of the translated query and candidates in the retired space; only
-- the query and the candidates are translated, never the whole table (approximate: recall depends on oversample).
CREATE FUNCTION star.nearest(family text, vintage integer, entity_id bigint, k integer DEFAULT 10,
                             oversample integer DEFAULT 10)
RETURNS TABLE (id bigint, cosine double precision) LANGUAGE plpgsql VOLATILE AS $$
DECLARE
    v record;
    key text;
    tbl text;
    q vector;
    avail text;
BEGIN
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
    PERFORM set_config('hnsw.ef_search', greatest(k * CASE WHEN v.served_from IS NULL THEN 1 ELSE oversample END,
                                                  100)::text, true);
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

DOWNGRADE = """
DROP FUNCTION IF EXISTS star.nearest(text, integer, bigint, integer, integer);
DROP FUNCTION IF EXISTS star.compat_apply(text, integer, integer, vector);
DROP TABLE IF EXISTS star.embedding_compat_rows;
DROP TABLE IF EXISTS star.embedding_consumers;
ALTER TABLE star.embedding_versions
    DROP CONSTRAINT IF EXISTS embedding_versions_served_from,
    DROP COLUMN IF EXISTS served_from,
    DROP CONSTRAINT IF EXISTS embedding_versions_status;
"""


def upgrade() -> None:
    op.execute(UPGRADE)


def downgrade() -> None:
    op.execute(DOWNGRADE)
