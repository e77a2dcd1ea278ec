"""SQL similarity over embedding version tables (the queries of docs/sql-similarity.md), through the HNSW index."""

from __future__ import annotations

import psycopg
from psycopg import sql

NEAREST = """
SELECT c.{target_key}, 1 - (c.embedding <=> (SELECT embedding FROM {query_table}
                                             WHERE {query_key} = %(id)s AND is_current)) AS cosine
FROM {target_table} c
WHERE c.is_current {exclude_self}
ORDER BY c.embedding <=> (SELECT embedding FROM {query_table} WHERE {query_key} = %(id)s AND is_current)
LIMIT %(k)s
"""


def nearest(conn: psycopg.Connection, *, query_table: str, query_key: str, query_id: int, target_table: str,
            target_key: str, k: int = 10, ef_search: int = 100) -> list[tuple[int, float]]:
    """The k entities of `target_table` nearest to `query_id`'s current vector in `query_table` (cosine)."""
    exclude = sql.SQL("AND c.{} <> %(id)s").format(sql.Identifier(target_key)) \
        if (query_table, query_key) == (target_table, target_key) else sql.SQL("")
    stmt = sql.SQL(NEAREST).format(target_key=sql.Identifier(target_key),
                                   query_table=sql.Identifier("star", query_table),
                                   query_key=sql.Identifier(query_key),
                                   target_table=sql.Identifier("star", target_table), exclude_self=exclude)
    with conn.transaction():
        conn.execute(sql.SQL("SET LOCAL hnsw.ef_search = {}").format(sql.Literal(ef_search)))
        return [(int(i), float(c)) for i, c in conn.execute(stmt, {"id": query_id, "k": k}).fetchall()]


def explain(conn: psycopg.Connection, **kwargs) -> str:
    """EXPLAIN of `nearest`, to check the index is used."""
    stmt = sql.SQL(NEAREST).format(target_key=sql.Identifier(kwargs["target_key"]),
                                   query_table=sql.Identifier("star", kwargs["query_table"]),
                                   query_key=sql.Identifier(kwargs["query_key"]),
                                   target_table=sql.Identifier("star", kwargs["target_table"]),
                                   exclude_self=sql.SQL(""))
    rows = conn.execute(sql.SQL("EXPLAIN ") + stmt, {"id": kwargs["query_id"], "k": kwargs.get("k", 10)}).fetchall()
    return "\n".join(r[0] for r in rows)
