"""What `star report` reads from the registry: every embedding vintage with its lineage, every stored map.

    registry.history -------------------> family, version, status, served_from, model, config, metrics (the parity
                                          gate's report sits in metrics.gate), data window, created / updated
    star.embedding_compat   --MAPS-->     family, from -> to, fit metrics (held-out cosine, r2, rows), created
"""

from __future__ import annotations

import psycopg

from star.store import registry

MAPS = """
SELECT family, from_version, to_version, fit_metrics, created_at
FROM star.embedding_compat
ORDER BY family, from_version DESC, to_version DESC
"""
MAP_COLUMNS = ("family", "from_version", "to_version", "fit_metrics", "created_at")


def vintages(conn: psycopg.Connection) -> list[dict]:
    """Every embedding vintage, oldest first, with its config and metrics (lineage, training, gate)."""
    return registry.history(conn)


def maps(conn: psycopg.Connection) -> list[dict]:
    """Every stored compatibility map (direct fits and composed ones) with its fit metrics."""
    return [dict(zip(MAP_COLUMNS, r)) for r in conn.execute(MAPS)]
