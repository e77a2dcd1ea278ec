"""The registry of trained text models: which adapters were trained on this database, on which data window.

Revision ID: 0007
Revises: 0006
Create Date: 2026-12-08

    star.text_models   one row per `star text train` run: the saved model directory, its base model, the
                       adapter's sha256, the data window of its training pairs, the configs and metrics.
                       `star text embed` with no --adapter / --base takes the newest row (star/store/text_models.py),
                       so a model trained against another database is never a default here.
Owned by star_owner like the other registry tables; star_writer writes it (the train job), star_reader reads it.
"""

from alembic import op

revision = "0007"
down_revision = "0006"
branch_labels = None
depends_on = None

UPGRADE = """
CREATE TABLE star.text_models (
    model_id        bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    path            text NOT NULL UNIQUE,
    base_model      text NOT NULL,
    adapter_sha256  text,
    data_start      timestamptz,
    data_end        timestamptz,
    config          jsonb NOT NULL DEFAULT '{}',
    metrics         jsonb NOT NULL DEFAULT '{}',
    created_at      timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX text_models_created ON star.text_models (created_at DESC, model_id DESC);
DO $$
BEGIN
    IF EXISTS (SELECT 1 FROM pg_roles WHERE rolname = 'star_owner') THEN
        ALTER TABLE star.text_models OWNER TO star_owner;
        GRANT SELECT, INSERT, UPDATE, DELETE ON star.text_models TO star_writer;
        GRANT SELECT ON star.text_models TO star_reader;
    END IF;
END $$;
"""


def upgrade() -> None:
    op.execute(UPGRADE)


def downgrade() -> None:
    op.execute("DROP TABLE IF EXISTS star.text_models")
