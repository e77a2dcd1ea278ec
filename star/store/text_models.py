"""The registry of trained text models (star.text_models, migration 0007): `star text train` records each saved
model with its base model, adapter checksum and training data window; `star text embed` with no option takes the
newest one trained on this database (never a directory trained against another database).

    star text train --record()--> star.text_models (path, base_model, adapter_sha256, data window, config, metrics)
    star text embed --newest()--> the model directory to embed with, or None: the base model
    star report     --paths()---> the training runs of this database (Table-2 analogue)
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

import psycopg

from star.errors import TextModelError

RECORD = """
INSERT INTO star.text_models (path, base_model, adapter_sha256, data_start, data_end, config, metrics)
VALUES (%(path)s, %(base_model)s, %(sha)s, %(start)s, %(end)s, %(config)s, %(metrics)s)
ON CONFLICT (path) DO UPDATE SET base_model = EXCLUDED.base_model, adapter_sha256 = EXCLUDED.adapter_sha256,
    data_start = EXCLUDED.data_start, data_end = EXCLUDED.data_end, config = EXCLUDED.config,
    metrics = EXCLUDED.metrics, created_at = now()
"""
PATHS = "SELECT path FROM star.text_models"
NEWEST = ("SELECT path, base_model, adapter_sha256, data_start, data_end, created_at FROM star.text_models "
          "ORDER BY created_at DESC, model_id DESC LIMIT 1")


@dataclass(frozen=True, kw_only=True)
class TrainedTextModel:
    path: str
    base_model: str
    adapter_sha256: str | None
    data_start: datetime | None
    data_end: datetime | None
    created_at: datetime


def record(conn: psycopg.Connection, *, path: Path, base_model: str, adapter_sha256: str | None,
           data_start: datetime | None, data_end: datetime | None, config: dict, metrics: dict) -> None:
    conn.execute(RECORD, {"path": str(Path(path).resolve()), "base_model": base_model, "sha": adapter_sha256,
                          "start": data_start, "end": data_end, "config": json.dumps(config, default=str),
                          "metrics": json.dumps(metrics, default=str)})


def paths(conn: psycopg.Connection) -> set[str]:
    """The (resolved) directories of every model trained on this database."""
    return {r[0] for r in conn.execute(PATHS)}


def newest(conn: psycopg.Connection) -> TrainedTextModel | None:
    """The newest model trained on this database; TextModelError when its directory is gone (no silent fallback
    to an older or a base model)."""
    row = conn.execute(NEWEST).fetchone()
    if row is None:
        return None
    model = TrainedTextModel(path=row[0], base_model=row[1], adapter_sha256=row[2], data_start=row[3],
                             data_end=row[4], created_at=row[5])
    if not Path(model.path).is_dir():
        raise TextModelError(f"the newest text model trained on this database, {model.path} (trained "
                             f"{model.created_at:%Y-%m-%d %H:%M} UTC), is gone from disk; restore it, pass "
                             "--adapter DIR (a model dir written by `star text train`) or --base for the base model")
    return model
