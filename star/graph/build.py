"""The marketplace graph as of a cutoff: what a model trained at that time may see, and nothing later.

    star.member_history / job_history   valid_from <= cutoff     --> "member" / "job" nodes (sorted ids)
    star.interactions                   event_timestamp <= cutoff --> (member, relation, job) edges
    star.attribute_edges                event_timestamp <= cutoff --> (member|job, relation, node_type) edges,
                                                                      node_type nodes (sorted string ids)
    + rev_<relation> edges (dst -> src); every edge keeps its time as edata "ts" (float64 epoch seconds)
    + star.graph.features: categorical codes and text vectors valid at the cutoff
        --> MarketGraph

Each table is read with one COPY into numpy; ids become node indexes by searchsorted / factorize, never a Python
loop over edges. Repeated events (the same member applying twice) stay separate edges.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd
import psycopg
import torch
from psycopg import sql

from star.common import ENTITIES, ID_COLUMN
from star.config import DbTarget
from star.db import connect
from star.graph import features as feats
from star.graph.config import GraphBuildError, GraphConfig
from star.graph.dgl_compat import import_dgl

__all__ = ["GraphBuildError", "GraphConfig", "MarketGraph", "build_graph"]

log = logging.getLogger(__name__)

ENTITY_IDS = "SELECT DISTINCT {key} FROM star.{history} WHERE valid_from <= %(cutoff)s"
FIRST_VALID = "SELECT min(valid_from) FROM star.{history}"
# one pass per edge table: which edge types exist at all, how many edges each has by the cutoff, and since when
INTERACTION_TYPES = """
SELECT 'member', relation, 'job', count(*) FILTER (WHERE event_timestamp <= %(cutoff)s), min(event_timestamp)
FROM star.interactions GROUP BY relation ORDER BY relation"""
ATTRIBUTE_TYPES = """
SELECT entity, relation, node_type, count(*) FILTER (WHERE event_timestamp <= %(cutoff)s), min(event_timestamp)
FROM star.attribute_edges GROUP BY 1, 2, 3 ORDER BY 1, 2, 3"""
INTERACTIONS = """
SELECT member_id, job_id, relation, extract(epoch FROM event_timestamp)::float8 FROM star.interactions
WHERE event_timestamp <= %(cutoff)s AND relation = ANY(%(relations)s)"""
ATTRIBUTE_EDGES = """
SELECT entity, entity_id, relation, node_type, node_id, extract(epoch FROM event_timestamp)::float8
FROM star.attribute_edges WHERE event_timestamp <= %(cutoff)s AND relation = ANY(%(relations)s)"""

EType = tuple[str, str, str]


@dataclass(frozen=True, kw_only=True)
class MarketGraph:
    graph: Any = field(metadata={"help": "DGL heterograph; edata 'ts' = event time in epoch seconds (float64)"})
    node_ids: dict[str, np.ndarray] = field(
        metadata={"help": "node type -> external id per node index (int64 for member/job, str for attributes)"})
    index: dict[str, dict] = field(metadata={"help": "node type -> external id -> node index"})
    features: dict[str, dict[str, torch.Tensor]] = field(
        metadata={"help": "node type -> 'text' (n, d) float32, 'text_mask' (n,) bool, 'categorical' (n, k) int64"})
    categorical_vocab: dict[str, dict[str, list[str]]] = field(
        metadata={"help": "node type -> column -> values; code i is values[i - 1], code 0 = missing/unknown"})
    cutoff: pd.Timestamp
    edge_counts: dict[str, int] = field(metadata={"help": "'src:relation:dst' -> forward edges in the graph"})
    text_versions: dict[str, int] = field(default_factory=dict,
                                          metadata={"help": "entity -> text embedding version used"})
    config: GraphConfig


def _entity_ids(conn: psycopg.Connection, entity: str, cutoff: pd.Timestamp) -> np.ndarray:
    query = sql.SQL(ENTITY_IDS).format(key=sql.Identifier(ID_COLUMN[entity]),
                                       history=sql.Identifier(f"{entity}_history"))
    ids = feats.copy_frame(conn, query, {"cutoff": cutoff}, ["id"], {"id": "int64"})["id"].to_numpy()
    if len(ids) == 0:
        (first,) = conn.execute(sql.SQL(FIRST_VALID).format(history=sql.Identifier(f"{entity}_history"))).fetchone()
        if first is None:
            raise GraphBuildError(f"star.{entity}_history is empty: there is no {entity} to build a graph of; "
                                  "load a marketplace first (`star seed`)")
        raise GraphBuildError(f"cutoff {cutoff} is before any data: the first {entity} is valid from {first}; "
                              "pick a later cutoff")
    return np.sort(ids)


def _pick(rows: list[tuple], requested: tuple[str, ...] | None, kind: str, option: str,
          cutoff: pd.Timestamp) -> list[EType]:
    """The edge types to build: those with edges by the cutoff, narrowed to the requested relations."""
    first = {}
    for _, rel, _, _, t in rows:
        first[rel] = min(first.get(rel, t), t)
    present = [(s, r, d) for s, r, d, n, _ in rows if n > 0]
    if requested is None:
        return present
    unknown = [r for r in requested if r not in first]
    if unknown:
        raise GraphBuildError(f"{option}: {kind} relation(s) {', '.join(map(repr, unknown))} do not exist; the data "
                              f"has {', '.join(sorted(first)) or 'none'}. Pass some of those, or None for all")
    late = [r for r in requested if not any(p[1] == r for p in present)]
    if late:
        raise GraphBuildError(f"{option}: {kind} relation {late[0]!r} has no edges at or before cutoff {cutoff} "
                              f"(its first is at {first[late[0]]}); pick a later --cutoff (or, from Python, leave "
                              f"it out of {option})")
    return [p for p in present if p[1] in requested]


def _edge_types(conn: psycopg.Connection, cfg: GraphConfig) -> tuple[list[EType], list[EType]]:
    inter_rows = conn.execute(INTERACTION_TYPES, {"cutoff": cfg.cutoff}).fetchall()
    attr_rows = conn.execute(ATTRIBUTE_TYPES, {"cutoff": cfg.cutoff}).fetchall()
    attribute = _pick(attr_rows, cfg.attribute_relations, "attribute", "attribute_relations", cfg.cutoff)
    interaction = _pick(inter_rows, cfg.interaction_relations, "interaction", "interaction_relations", cfg.cutoff)
    if cfg.edge_types is not None:
        attribute = [e for e in attribute if e in cfg.edge_types]
        interaction = [e for e in interaction if e in cfg.edge_types]
    if not interaction:
        first = min((r[4] for r in inter_rows), default=None)
        raise GraphBuildError(
            f"no interactions at or before cutoff {cfg.cutoff} "
            + (f"(the first is at {first}); pick a later cutoff" if first is not None else
               "(star.interactions is empty); load member -> job edges first (`star seed`)")
            + ("" if cfg.interaction_relations is None else ", or request other interaction_relations"))
    return interaction, attribute


def _edges(masks: dict[EType, np.ndarray], src: np.ndarray, dst: np.ndarray, ts: np.ndarray,
           out: dict[EType, tuple[np.ndarray, np.ndarray, np.ndarray]]) -> int:
    """Split one table's edges by type into (src index, dst index, ts), time-ordered; returns edges dropped."""
    dropped = 0
    for etype, keep in masks.items():
        ok = keep & (src >= 0) & (dst >= 0)
        dropped += int(keep.sum() - ok.sum())
        s, d, t = src[ok], dst[ok], ts[ok]
        order = np.lexsort((d, s, t))
        out[etype] = (s[order], d[order], t[order])
    return dropped


def _index_of(node_ids: np.ndarray, ids: np.ndarray) -> np.ndarray:
    pos, found = feats.positions(node_ids, ids)
    return np.where(found, pos, -1)


def _read_edges(conn: psycopg.Connection, cfg: GraphConfig, node_ids: dict[str, np.ndarray],
                interaction: list[EType], attribute: list[EType]) -> dict[EType, tuple]:
    """Interaction and attribute edges by the cutoff; fills node_ids for the attribute node types."""
    edges: dict[EType, tuple] = {}
    cat = pd.CategoricalDtype
    inter = feats.copy_frame(conn, sql.SQL(INTERACTIONS), {"cutoff": cfg.cutoff,
                                                           "relations": sorted({e[1] for e in interaction})},
                             ["member_id", "job_id", "relation", "ts"],
                             {"member_id": "int64", "job_id": "int64", "relation": "category", "ts": "float64"})
    masks = {e: (inter["relation"] == e[1]).to_numpy() for e in interaction}
    dropped = _edges(masks, _index_of(node_ids["member"], inter["member_id"].to_numpy()),
                     _index_of(node_ids["job"], inter["job_id"].to_numpy()), inter["ts"].to_numpy(), edges)
    if attribute:
        attr = feats.copy_frame(conn, sql.SQL(ATTRIBUTE_EDGES), {"cutoff": cfg.cutoff,
                                                                 "relations": sorted({e[1] for e in attribute})},
                                ["entity", "entity_id", "relation", "node_type", "node_id", "ts"],
                                {"entity": cat(ENTITIES), "entity_id": "int64", "relation": "category",
                                 "node_type": "category", "node_id": str, "ts": "float64"})
        # categorical compares: no per-row string building over millions of edges
        masks = {(s, r, d): ((attr["entity"] == s) & (attr["relation"] == r) & (attr["node_type"] == d)).to_numpy()
                 for s, r, d in attribute}
        src = np.full(len(attr), -1, dtype=np.int64)
        for entity in ENTITIES:
            mask = (attr["entity"] == entity).to_numpy()
            src[mask] = _index_of(node_ids[entity], attr["entity_id"].to_numpy()[mask])
        dst = np.full(len(attr), -1, dtype=np.int64)
        for node_type in sorted({e[2] for e in attribute}):
            mask = (attr["node_type"] == node_type).to_numpy() & (src >= 0)
            # nodes are the attribute values linked by some edge by the cutoff, ordered by id
            codes, uniques = pd.factorize(attr["node_id"].to_numpy()[mask], sort=True)
            dst[mask] = codes
            node_ids[node_type] = np.asarray(uniques, dtype=object)
        dropped += _edges(masks, src, dst, attr["ts"].to_numpy(), edges)
    if dropped:
        log.warning("%d edges at or before %s name a member or job with no history row valid by then; left out",
                    dropped, cfg.cutoff)
    return edges


def _node_features(conn: psycopg.Connection, cfg: GraphConfig, node_ids: dict[str, np.ndarray]):
    features: dict[str, dict[str, torch.Tensor]] = {nt: {} for nt in node_ids}
    vocab: dict[str, dict[str, list[str]]] = {}
    versions: dict[str, int] = {}
    model = None  # the member vectors' encoder: the job vectors by default come from the same one
    for entity in ENTITIES:
        if cfg.use_categorical:
            features[entity]["categorical"], vocab[entity] = feats.categorical(conn, entity, node_ids[entity],
                                                                               cfg.cutoff)
        if not cfg.use_text or (cfg.text_version is not None and entity not in cfg.text_version):
            continue
        chosen = feats.text_version(conn, entity, None if cfg.text_version is None else cfg.text_version[entity],
                                    model=model)
        if chosen is None:
            log.info("no published %s; %s nodes get no text features", feats.TEXT_FAMILY[entity], entity)
            continue
        versions[entity], dim, model = chosen
        features[entity]["text"], features[entity]["text_mask"] = feats.text(
            conn, entity, node_ids[entity], cfg.cutoff, versions[entity], dim)
    return features, vocab, versions


def build_graph(target: DbTarget, cfg: GraphConfig) -> MarketGraph:
    """The heterograph of members, jobs and attribute nodes with every edge and feature as of `cfg.cutoff`."""
    dgl = import_dgl()
    with connect(target) as conn:
        node_ids = {entity: _entity_ids(conn, entity, cfg.cutoff) for entity in ENTITIES}
        interaction, attribute = _edge_types(conn, cfg)
        edges = _read_edges(conn, cfg, node_ids, interaction, attribute)
        features, vocab, versions = _node_features(conn, cfg, node_ids)
    data, times = {}, {}
    for (s, r, d), (src, dst, ts) in edges.items():
        data[(s, r, d)] = (torch.from_numpy(src), torch.from_numpy(dst))
        times[(s, r, d)] = torch.from_numpy(ts)
        if cfg.add_reverse:
            data[(d, f"rev_{r}", s)] = (torch.from_numpy(dst), torch.from_numpy(src))
            times[(d, f"rev_{r}", s)] = times[(s, r, d)]
    graph = dgl.heterograph(data, num_nodes_dict={nt: len(ids) for nt, ids in node_ids.items()}, idtype=torch.int64)
    for etype, ts in times.items():
        graph.edges[etype].data["ts"] = ts
    index = {nt: dict(zip(ids.tolist(), range(len(ids)))) for nt, ids in node_ids.items()}
    return MarketGraph(graph=graph, node_ids=node_ids, index=index, features=features, categorical_vocab=vocab,
                       cutoff=cfg.cutoff, edge_counts={":".join(e): len(v[0]) for e, v in edges.items()},
                       text_versions=versions, config=cfg)
