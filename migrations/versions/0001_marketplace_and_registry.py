"""pgvector, the marketplace tables and the version registry.

Revision ID: 0001
Revises:
Create Date: 2026-11-22

Marketplace (schema star):
    members / jobs                  one row per entity
    member_history / job_history    categorical attributes (jsonb) valid from a time: the attribute history
    text_snapshots                  profile / posting texts valid from a time, with their MD5
    attribute_nodes                 skills, titles, companies, ... (string ids)
    attribute_edges                 member|job -> attribute node, with event time (1970-01-01 = always)
    interactions                    member -> job (apply, save, view, dismiss, ...) with event time
    id_features                     derived: per entity and change time, the attribute ids linked so far
    synthetic_truth                 the hidden utility of a synthetic marketplace (empty for real data)
Registry:
    embedding_versions              (family, version): entity, dim, status, lineage, feature view
    embedding_compat                (family, from_version, to_version): linear map W, bias, fit metrics
"""

from alembic import op

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None

UPGRADE = """
CREATE EXTENSION IF NOT EXISTS vector;
CREATE SCHEMA IF NOT EXISTS star;

CREATE TABLE star.members (
    member_id   bigint PRIMARY KEY,
    created     timestamptz NOT NULL DEFAULT now()
);
CREATE TABLE star.jobs (
    job_id      bigint PRIMARY KEY,
    created     timestamptz NOT NULL DEFAULT now()
);
CREATE TABLE star.member_history (
    member_id   bigint NOT NULL REFERENCES star.members,
    valid_from  timestamptz NOT NULL,
    attrs       jsonb NOT NULL,
    created     timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (member_id, valid_from)
);
CREATE TABLE star.job_history (
    job_id      bigint NOT NULL REFERENCES star.jobs,
    valid_from  timestamptz NOT NULL,
    attrs       jsonb NOT NULL,
    created     timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (job_id, valid_from)
);
CREATE TABLE star.text_snapshots (
    entity      text NOT NULL CHECK (entity IN ('member', 'job')),
    entity_id   bigint NOT NULL,
    valid_from  timestamptz NOT NULL,
    text        text NOT NULL,
    text_md5    text GENERATED ALWAYS AS (md5(text)) STORED,
    created     timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (entity, entity_id, valid_from)
);
CREATE TABLE star.attribute_nodes (
    node_type   text NOT NULL,
    node_id     text NOT NULL,
    label       text NOT NULL,
    created     timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (node_type, node_id)
);
CREATE TABLE star.attribute_edges (
    entity          text NOT NULL CHECK (entity IN ('member', 'job')),
    entity_id       bigint NOT NULL,
    relation        text NOT NULL,
    node_type       text NOT NULL,
    node_id         text NOT NULL,
    event_timestamp timestamptz NOT NULL,
    created         timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (entity, entity_id, relation, node_type, node_id, event_timestamp),
    FOREIGN KEY (node_type, node_id) REFERENCES star.attribute_nodes
);
CREATE INDEX attribute_edges_node ON star.attribute_edges (node_type, node_id);
CREATE TABLE star.interactions (
    member_id       bigint NOT NULL REFERENCES star.members,
    job_id          bigint NOT NULL REFERENCES star.jobs,
    relation        text NOT NULL,
    event_timestamp timestamptz NOT NULL,
    created         timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (member_id, job_id, relation, event_timestamp)
);
CREATE INDEX interactions_relation_time ON star.interactions (relation, event_timestamp);
CREATE INDEX interactions_job ON star.interactions (job_id);
CREATE TABLE star.id_features (
    entity          text NOT NULL CHECK (entity IN ('member', 'job')),
    entity_id       bigint NOT NULL,
    event_timestamp timestamptz NOT NULL,
    ids             jsonb NOT NULL,
    created         timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (entity, entity_id, event_timestamp)
);
CREATE TABLE star.synthetic_truth (
    member_id       bigint NOT NULL,
    job_id          bigint NOT NULL,
    event_timestamp timestamptz NOT NULL,
    utility         double precision NOT NULL,
    outcome         text NOT NULL,
    PRIMARY KEY (member_id, job_id, event_timestamp)
);

CREATE TABLE star.embedding_versions (
    family          text NOT NULL,
    version         integer NOT NULL CHECK (version >= 1),
    entity          text NOT NULL,
    dim             integer CHECK (dim IS NULL OR dim > 0),
    status          text NOT NULL DEFAULT 'published',
    feature_view    text NOT NULL UNIQUE,
    model           text,
    config          jsonb NOT NULL DEFAULT '{}',
    data_start      timestamptz,
    data_end        timestamptz,
    metrics         jsonb NOT NULL DEFAULT '{}',
    created_at      timestamptz NOT NULL DEFAULT now(),
    updated_at      timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (family, version)
);
CREATE TABLE star.embedding_compat (
    family          text NOT NULL,
    from_version    integer NOT NULL,
    to_version      integer NOT NULL,
    matrix          double precision[] NOT NULL,
    bias            double precision[],
    fit_metrics     jsonb NOT NULL DEFAULT '{}',
    created_at      timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (family, from_version, to_version),
    FOREIGN KEY (family, from_version) REFERENCES star.embedding_versions,
    FOREIGN KEY (family, to_version) REFERENCES star.embedding_versions,
    CHECK (from_version <> to_version)
);
"""

DOWNGRADE = """
DROP SCHEMA IF EXISTS star CASCADE;
DROP EXTENSION IF EXISTS vector;
"""


def upgrade() -> None:
    op.execute(UPGRADE)


def downgrade() -> None:
    op.execute(DOWNGRADE)
