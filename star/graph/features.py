"""Member and job node features as of the cutoff, read in bulk.

    star.<entity>_history  --row valid at the cutoff, vocabulary of values seen by then--> "categorical" (n, k) int64
    star.text_snapshots    --snapshot valid at the cutoff--> its vector in star.<entity>_text_embedding_v<k>
                           --> "text" (n, d) float32 + "text_mask" (n,) bool

A snapshot the chosen version has not embedded (or embedded from a different text) counts as no text: zeros and
mask False, never an older snapshot's vector.
"""

from __future__ import annotations

import io

import numpy as np
import pandas as pd
import psycopg
import torch
from pgvector.psycopg import register_vector
from psycopg import sql

from star.common import ID_COLUMN
from star.graph.config import GraphBuildError
from star.graph.inputs import positions
from star.store import registry

TEXT_FAMILY = {"member": "member_text_embedding", "job": "job_text_embedding"}

HISTORY_VALUES = """
SELECT h.{key}, kv.key, kv.value, h.valid_from = c.valid_from AS current
FROM star.{history} h
JOIN (SELECT DISTINCT ON ({key}) {key}, valid_from FROM star.{history} WHERE valid_from <= %(cutoff)s
      ORDER BY {key}, valid_from DESC, created DESC) c USING ({key})
CROSS JOIN LATERAL jsonb_each_text(h.attrs) kv
WHERE h.valid_from <= %(cutoff)s
"""

TEXT_AT_CUTOFF = """
SELECT s.entity_id, e.embedding
FROM (SELECT DISTINCT ON (entity_id) entity_id, valid_from, text_md5 FROM star.text_snapshots
      WHERE entity = %(entity)s AND valid_from <= %(cutoff)s ORDER BY entity_id, valid_from DESC) s
JOIN {table} e ON e.{key} = s.entity_id AND e.event_timestamp = s.valid_from AND e.text_md5 = s.text_md5
"""


def copy_frame(conn: psycopg.Connection, query: sql.Composable, params: dict, names: list[str],
               dtype: dict) -> pd.DataFrame:
    """One query's result through COPY ... CSV into pandas: ~10x faster than fetching tuples for millions of rows."""
    buf = io.BytesIO()
    with conn.cursor().copy(sql.SQL("COPY ({}) TO STDOUT WITH (FORMAT csv)").format(query), params) as cp:
        for chunk in cp:
            buf.write(chunk)
    buf.seek(0)
    if not buf.getbuffer().nbytes:
        return pd.DataFrame({n: pd.Series(dtype=dtype.get(n, object)) for n in names})
    # keep_default_na=False: a node id "NA" stays a string; SQL NULL (and '') arrive as ""
    return pd.read_csv(buf, names=names, header=None, dtype=dtype, keep_default_na=False)


def categorical(conn: psycopg.Connection, entity: str, node_ids: np.ndarray,
                cutoff: pd.Timestamp) -> tuple[torch.Tensor, dict[str, list[str]]]:
    """Codes (n, k) of the attributes valid at the cutoff; vocabulary per column from every row valid by then."""
    key = ID_COLUMN[entity]
    query = sql.SQL(HISTORY_VALUES).format(key=sql.Identifier(key), history=sql.Identifier(f"{entity}_history"))
    df = copy_frame(conn, query, {"cutoff": cutoff}, ["id", "column", "value", "current"],
                    {"id": "int64", "column": str, "value": str, "current": str})
    columns = sorted(set(df["column"]))
    df = df[df["value"] != ""]  # JSON null (and empty strings) are "missing": code 0
    vocab = {c: sorted(set(df.loc[df["column"] == c, "value"])) for c in columns}
    codes = np.zeros((len(node_ids), len(columns)), dtype=np.int64)
    current = df[df["current"] == "t"]
    for j, col in enumerate(columns):
        rows = current[current["column"] == col]
        pos, found = positions(node_ids, rows["id"].to_numpy())
        code = pd.Categorical(rows["value"], categories=vocab[col]).codes.astype(np.int64) + 1
        codes[pos[found], j] = code[found]
    return torch.from_numpy(codes), vocab


def text_version(conn: psycopg.Connection, entity: str, requested: int | None, *,
                 model: str | None = None) -> tuple[int, int, str] | None:
    """(version, dim, model) of the embedding family to read: the requested one, or the newest published — of
    those made by `model` when there are any (member and job vectors from one encoder share a space) — or None."""
    family = TEXT_FAMILY[entity]
    rows = [(r.version, r.dim, r.status, r.model) for r in registry.rows(conn, family)]
    if requested is None:
        published = [(v, d, m) for v, d, status, m in rows if status == "published"]
        same = [p for p in published if model is not None and p[2] == model]
        return (same or published)[-1] if published else None
    found = [(v, d, s, m) for v, d, s, m in rows if v == requested]
    if not found:
        raise GraphBuildError(f"{family} version {requested} does not exist (versions: "
                              f"{[r[0] for r in rows] or 'none'}); pass one of those in text_version, "
                              "or run `star text embed` to create one")
    version, dim, status, made_by = found[0]
    if status == "building":
        raise GraphBuildError(f"{family} version {requested} is still building; finish it with `star text embed` "
                              "or pass a published version in text_version")
    return version, dim, made_by


def text(conn: psycopg.Connection, entity: str, node_ids: np.ndarray, cutoff: pd.Timestamp, version: int,
         dim: int) -> tuple[torch.Tensor, torch.Tensor]:
    """(n, dim) float32 vectors of the snapshots valid at the cutoff and the (n,) mask of nodes that have one. A
    retired version is read as it is served: its serving version's vectors through the stored map."""
    from star.versions import compat

    family = TEXT_FAMILY[entity]
    row = registry.find(conn, family, version)
    served_from = None if row is None else row.served_from
    source = version if served_from is None else served_from
    table = registry.table(family, source)
    if not registry.exists(conn, family, source):
        raise GraphBuildError(f"{family} version {source} has no table {registry.qualified(family, source)}; pass "
                              "another version in text_version")
    register_vector(conn)
    query = sql.SQL(TEXT_AT_CUTOFF).format(table=table, key=sql.Identifier(ID_COLUMN[entity]))
    with conn.cursor(binary=True) as cur:  # binary: pgvector hands over float32 buffers, no text parsing
        rows = cur.execute(query, {"entity": entity, "cutoff": cutoff}).fetchall()
    vectors = np.zeros((len(node_ids), dim), dtype=np.float32)
    mask = np.zeros(len(node_ids), dtype=bool)
    if rows:
        ids = np.fromiter((r[0] for r in rows), dtype=np.int64, count=len(rows))
        pos, found = positions(node_ids, ids)
        stacked = np.stack([r[1].to_numpy() for r in rows]).astype(np.float32, copy=False)
        if served_from is not None:
            stacked = compat.load(conn, family, served_from, version).apply(stacked).astype(np.float32)
        vectors[pos[found]] = stacked[found]
        mask[pos[found]] = True
    return torch.from_numpy(vectors), torch.from_numpy(mask)
