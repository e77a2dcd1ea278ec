"""Least privilege: the roles star_owner, star_writer and star_reader, their grants and default privileges.

Revision ID: 0004
Revises: 0003
Create Date: 2026-11-29

    star_owner   owns the schemas star and feast_online and what migrations create there (tables, functions):
                 runs later migrations
    star_writer  the jobs (load, embed, lifecycle, feast apply / materialize): reads and writes the star tables,
                 creates (so owns) version tables star.<family>_v<k>, Feast's online tables (feast_online) and
                 Feast's SQL registry tables (public)
    star_reader  consumers (rankers, analysts): SELECT on the tables of star, feast_online and Feast's registry (and
                 on alembic_version), EXECUTE on star.nearest / star.compat_apply, USAGE on those schemas; nothing
                 else (but CONNECT and TEMPORARY on the database: the point-in-time join's entity rows)
Roles are cluster-wide: created only when missing (many databases, e.g. the tests' clones of one template, share
them), with LOGIN and no password (set one on a real server: docs/operations.md). Default privileges cover tables
created later by star_owner, star_writer and the role running this migration (the embedded server's postgres, which
runs the jobs there too). Run it as a superuser (or a role that is a member of the three roles). The downgrade
removes this database's grants, default privileges and ownership (objects go back to the role running it) and keeps
the roles, which other databases may use.
"""

from alembic import op

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None

ROLES = ("star_owner", "star_writer", "star_reader")
# Feast 0.67's SQL registry (feast/infra/registry/sql.py): created on the first FeatureStore(), by whoever opens it
FEAST_REGISTRY_TABLES = ("data_sources", "entities", "feast_metadata", "feature_services",
                         "feature_view_version_history", "feature_views", "label_views", "managed_infra",
                         "on_demand_feature_views", "permissions", "projects", "saved_datasets", "stream_feature_views",
                         "validation_references")
VERSION_TABLE = r"_v[0-9]+(__staging)?$"  # star.<family>_v<k> and its staging table: created by the embedding jobs

CREATE_ROLES = """
DO $$
DECLARE r text;
BEGIN
    FOREACH r IN ARRAY %(roles)s LOOP
        IF NOT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = r) THEN
            BEGIN
                EXECUTE format('CREATE ROLE %%I LOGIN', r);
            EXCEPTION WHEN duplicate_object OR unique_violation THEN
                NULL;  -- created at the same moment by a migration of another database
            END;
        END IF;
    END LOOP;
END $$;
CREATE SCHEMA IF NOT EXISTS feast_online;  -- Feast creates it on apply, owned by whoever applies first
"""

# existing objects: the migrations' to star_owner, the jobs' and Feast's to star_writer (so that a writer can later
# re-apply, index, retire or drop what the superuser created before this migration)
OWNERSHIP = """
DO $$
DECLARE o record;
BEGIN
    ALTER SCHEMA star OWNER TO star_owner;
    ALTER SCHEMA feast_online OWNER TO star_owner;
    ALTER TABLE public.alembic_version OWNER TO star_owner;  -- later migrations record their revision as star_owner
    FOR o IN
        SELECT c.oid::regclass AS rel,
               CASE WHEN n.nspname = 'star' AND c.relname !~ %(version_table)s THEN 'star_owner'
                    ELSE 'star_writer' END AS owner
        FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
        WHERE c.relkind IN ('r', 'p')
          AND (n.nspname IN ('star', 'feast_online') OR (n.nspname = 'public' AND c.relname = ANY(%(registry)s)))
    LOOP
        EXECUTE format('ALTER TABLE %%s OWNER TO %%I', o.rel, o.owner);
    END LOOP;
    FOR o IN SELECT p.oid::regprocedure AS fn FROM pg_proc p JOIN pg_namespace n ON n.oid = p.pronamespace
             WHERE n.nspname = 'star' LOOP
        EXECUTE format('ALTER ROUTINE %%s OWNER TO star_owner', o.fn);
    END LOOP;
END $$;
"""

GRANTS = """
DO $$
BEGIN
    EXECUTE format('GRANT CONNECT, TEMPORARY, CREATE ON DATABASE %%I TO star_owner', current_database());
    EXECUTE format('GRANT CONNECT, TEMPORARY ON DATABASE %%I TO star_writer, star_reader', current_database());
    IF current_setting('server_version_num')::int >= 170000 THEN  -- ANALYZE, VACUUM by the jobs (MAINTAIN: PG 17+)
        EXECUTE 'GRANT MAINTAIN ON ALL TABLES IN SCHEMA star, feast_online TO star_writer';
    END IF;
END $$;
GRANT USAGE ON SCHEMA star, feast_online, public TO star_writer, star_reader;
GRANT CREATE ON SCHEMA star, feast_online, public TO star_writer;
GRANT SELECT, INSERT, UPDATE, DELETE ON ALL TABLES IN SCHEMA star, feast_online TO star_writer;
GRANT SELECT ON ALL TABLES IN SCHEMA star, feast_online TO star_reader;
GRANT SELECT ON public.alembic_version TO star_writer, star_reader;  -- `star db up` / `db env` read the revision
GRANT EXECUTE ON FUNCTION star.nearest(text, integer, bigint, integer, integer),
    star.compat_apply(text, integer, integer, vector) TO star_writer, star_reader;
DO $$
DECLARE t regclass;
BEGIN
    FOR t IN SELECT c.oid::regclass FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
             WHERE n.nspname = 'public' AND c.relkind IN ('r', 'p') AND c.relname = ANY(%(registry)s) LOOP
        EXECUTE format('GRANT SELECT, INSERT, UPDATE, DELETE ON %%s TO star_writer', t);
        EXECUTE format('GRANT SELECT ON %%s TO star_reader', t);
    END LOOP;
END $$;
"""

# tables created later (version tables, Feast's online and registry tables, the next migrations'), per creating role
DEFAULT_PRIVILEGES = """
DO $$
DECLARE
    creator text;
    s text;
BEGIN
    FOREACH creator IN ARRAY ARRAY(SELECT DISTINCT unnest(%(roles)s || current_user::text)) LOOP
        CONTINUE WHEN creator = 'star_reader';
        FOREACH s IN ARRAY ARRAY['star', 'feast_online', 'public'] LOOP
            EXECUTE format('ALTER DEFAULT PRIVILEGES FOR ROLE %%I IN SCHEMA %%I GRANT SELECT ON TABLES TO star_reader',
                           creator, s);
            CONTINUE WHEN creator = 'star_writer';
            EXECUTE format('ALTER DEFAULT PRIVILEGES FOR ROLE %%I IN SCHEMA %%I '
                           'GRANT SELECT, INSERT, UPDATE, DELETE ON TABLES TO star_writer', creator, s);
            IF s <> 'public' AND current_setting('server_version_num')::int >= 170000 THEN
                EXECUTE format('ALTER DEFAULT PRIVILEGES FOR ROLE %%I IN SCHEMA %%I GRANT MAINTAIN ON TABLES '
                               'TO star_writer', creator, s);
            END IF;
        END LOOP;
        EXECUTE format('ALTER DEFAULT PRIVILEGES FOR ROLE %%I IN SCHEMA star GRANT EXECUTE ON FUNCTIONS TO %%s',
                       creator, CASE creator WHEN 'star_writer' THEN 'star_reader' ELSE 'star_writer, star_reader' END);
    END LOOP;
END $$;
"""

# this database only: ownership back to the role running the downgrade, then every grant and default privilege of
# the three roles; the roles themselves stay (cluster-wide)
DOWNGRADE = """
DO $$
DECLARE
    roles text[] := %(roles)s;
    o record;
    s text;
BEGIN
    FOR o IN SELECT c.oid::regclass AS rel FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
             WHERE c.relkind IN ('r', 'p') AND n.nspname IN ('star', 'feast_online', 'public')
               AND pg_get_userbyid(c.relowner) = ANY(roles) LOOP
        EXECUTE format('ALTER TABLE %%s OWNER TO %%I', o.rel, current_user);
    END LOOP;
    FOR o IN SELECT p.oid::regprocedure AS fn FROM pg_proc p JOIN pg_namespace n ON n.oid = p.pronamespace
             WHERE n.nspname = 'star' AND pg_get_userbyid(p.proowner) = ANY(roles) LOOP
        EXECUTE format('ALTER ROUTINE %%s OWNER TO %%I', o.fn, current_user);
    END LOOP;
    FOR o IN SELECT pg_get_userbyid(a.defaclrole) AS creator, n.nspname, a.defaclobjtype
             FROM pg_default_acl a JOIN pg_namespace n ON n.oid = a.defaclnamespace LOOP
        EXECUTE format('ALTER DEFAULT PRIVILEGES FOR ROLE %%I IN SCHEMA %%I REVOKE ALL ON %%s FROM %%s', o.creator,
                       o.nspname, CASE o.defaclobjtype WHEN 'r' THEN 'TABLES' WHEN 'S' THEN 'SEQUENCES'
                                  WHEN 'f' THEN 'FUNCTIONS' ELSE 'TYPES' END,
                       (SELECT string_agg(quote_ident(r), ', ') FROM unnest(roles) r WHERE r <> o.creator));
    END LOOP;
    FOREACH s IN ARRAY ARRAY['star', 'feast_online', 'public'] LOOP
        CONTINUE WHEN to_regnamespace(s) IS NULL;
        IF (SELECT pg_get_userbyid(nspowner) FROM pg_namespace WHERE nspname = s) = ANY(roles) THEN
            EXECUTE format('ALTER SCHEMA %%I OWNER TO %%I', s, current_user);
        END IF;
        EXECUTE format('REVOKE ALL ON ALL TABLES IN SCHEMA %%I FROM star_owner, star_writer, star_reader', s);
        EXECUTE format('REVOKE ALL ON SCHEMA %%I FROM star_owner, star_writer, star_reader', s);
    END LOOP;
    REVOKE ALL ON ALL FUNCTIONS IN SCHEMA star FROM star_owner, star_writer, star_reader;
    EXECUTE format('REVOKE ALL ON DATABASE %%I FROM star_owner, star_writer, star_reader', current_database());
    IF to_regnamespace('feast_online') IS NOT NULL
       AND NOT EXISTS (SELECT 1 FROM pg_class WHERE relnamespace = to_regnamespace('feast_online')) THEN
        BEGIN
            DROP SCHEMA feast_online;  -- empty: Feast creates it again on its next apply
        EXCEPTION WHEN dependent_objects_still_exist THEN
            NULL;  -- not empty after all (e.g. a type): leave it
        END;
    END IF;
END $$;
"""


def _sql(template: str) -> str:
    """The statements with this module's names filled in as SQL literals (the DO blocks take no parameters)."""
    def array(names) -> str:
        return "ARRAY[" + ", ".join(f"'{n}'" for n in names) + "]::text[]"  # fixed names above, no quotes inside

    return template % {"roles": array(ROLES), "registry": array(FEAST_REGISTRY_TABLES),
                       "version_table": f"'{VERSION_TABLE}'"}


def upgrade() -> None:
    for template in (CREATE_ROLES, OWNERSHIP, GRANTS, DEFAULT_PRIVILEGES):
        op.execute(_sql(template))


def downgrade() -> None:
    op.execute(_sql(DOWNGRADE))
