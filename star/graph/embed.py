"""The graph embedding job: a trained graph model -> versions of member_graph_embedding / job_graph_embedding.

    checkpoint (weights sha256) --same fingerprint as a version?--> continue it, else a new version
    graph at the cutoff (the model's relations and text versions) --adapt + layer-wise inference--> every member
    and job present at the cutoff --> staging batches (committed) --> publish: star.<family>_v<k> rows stamped
    event_timestamp = cutoff + HNSW over each entity's newest row, status 'published' (one transaction)

A version is one model; each run at a new cutoff adds a snapshot (a consumer joining point-in-time gets the
embedding of the newest graph at or before its event). Running again at the same cutoff writes nothing unless the
graph at that cutoff changed (a later load with earlier-stamped rows: source_md5 = md5(weights, cutoff, graph
digest)), in which case the snapshot is rewritten. Killed at any point: nothing half-published; the next run redoes
the staging and publishes.
"""

from __future__ import annotations

import hashlib
import time
from dataclasses import dataclass, field

import numpy as np
import pandas as pd
from psycopg import sql
from tqdm.auto import tqdm

from star.config import DbTarget
from star.db import connect
from star.errors import ConfigError
from star.graph.config import FAMILIES

DATA_END = """
SELECT greatest((SELECT max(event_timestamp) FROM star.interactions),
                (SELECT max(event_timestamp) FROM star.attribute_edges),
                (SELECT max(valid_from) FROM star.member_history),
                (SELECT max(valid_from) FROM star.job_history))
"""


def data_end(target: DbTarget) -> pd.Timestamp:
    """The newest event time in the marketplace tables: the default cutoff of `star graph train|embed`."""
    with connect(target) as conn:
        (end,) = conn.execute(DATA_END).fetchone()
    if end is None:
        raise ConfigError("the marketplace is empty: load one first (`star seed --synthetic` or `star seed --from`)")
    return pd.Timestamp(end).tz_convert("UTC")


@dataclass(frozen=True, kw_only=True)
class GraphEmbedConfig:
    entities: tuple[str, ...] = field(default=("member", "job"), metadata={"help": "which families to write"})
    commit_every: int = field(default=20000, metadata={"help": "rows per committed staging batch (kill-safe unit)"})
    batch_size: int = field(default=4096, metadata={"help": "nodes per step of layer-wise inference"})
    hnsw_m: int = field(default=16, metadata={"help": "HNSW graph degree"})
    hnsw_ef_construction: int = field(default=64, metadata={"help": "HNSW build beam"})
    candidate: bool = field(default=False, metadata={"help": "a new version becomes 'candidate' (publish it through "
                                                             "the gate: `star versions publish`)"})
    await_feast: bool = field(default=False, metadata={
        "help": "a new version stays 'building' until Feast serves it (pipeline: apply + materialize, then it "
                "becomes published or candidate); `star text|graph embed` set it"})

    def __post_init__(self):
        wrong = [e for e in self.entities if e not in FAMILIES]
        if wrong or not self.entities:
            raise ConfigError(f"entities={self.entities!r}: choose from {tuple(FAMILIES)}")


def _fingerprint(ckpt) -> dict:
    return {"kind": "graph_embedding", "weights_sha256": ckpt.sha256, "model": ckpt.info["model"],
            "text_versions": ckpt.info["text_versions"], "etypes": ckpt.info["etypes"]}


def graph_digest(mg) -> str:
    """MD5 of what the embeddings are computed from: every node id, edge and node feature of the graph (a load
    that changes any of them at or before the cutoff changes the digest)."""
    h = hashlib.md5()
    for nt in sorted(mg.node_ids):
        h.update(f"nodes:{nt}:".encode())
        ids = mg.node_ids[nt]
        h.update(np.ascontiguousarray(ids).tobytes() if ids.dtype != object else "\x1f".join(ids).encode())
        for name, x in sorted(mg.features.get(nt, {}).items()):
            h.update(f"{name}:".encode() + x.contiguous().numpy().tobytes())
    g = mg.graph
    for etype in sorted(g.canonical_etypes):
        src, dst = g.edges(etype=etype)
        h.update(":".join(etype).encode() + src.numpy().tobytes() + dst.numpy().tobytes())
    return h.hexdigest()


def _rows_from(conn, v, cutoff: pd.Timestamp, source: str) -> int:
    """Rows of the snapshot at `cutoff` computed from this model and graph."""
    (n,) = conn.execute(sql.SQL("SELECT count(*) FROM {t} WHERE event_timestamp = %s AND source_md5 = %s").format(
        t=v.table), (cutoff, source)).fetchone()
    return n


def embed_graph(target: DbTarget, ckpt, *, cutoff: pd.Timestamp | None = None,
                cfg: GraphEmbedConfig = GraphEmbedConfig(), progress: bool = True) -> list[dict]:
    """Embed every member and job of the graph at `cutoff` (default: the data's end); one dict per family."""
    from star.graph.align import store_joint_map
    from star.graph.build import build_graph
    from star.graph.checkpoint import adapt, graph_config
    from star.graph.train import infer
    from star.store import embeddings as store
    from star.store.locks import family_lock

    started = time.time()
    cutoff = data_end(target) if cutoff is None else pd.Timestamp(cutoff).tz_convert("UTC")
    t0 = time.perf_counter()
    mg = build_graph(target, graph_config(ckpt, cutoff))
    build_seconds = time.perf_counter() - t0
    known = {nt: np.isin(mg.node_ids[nt], ckpt.node_ids[nt]) for nt in cfg.entities}
    model, features = adapt(ckpt, mg)
    t0 = time.perf_counter()
    z = infer(model, mg.graph, features, cfg.batch_size)
    infer_seconds = time.perf_counter() - t0
    fingerprint = _fingerprint(ckpt)
    source = hashlib.md5(f"{ckpt.sha256}:{cutoff.isoformat()}:{graph_digest(mg)}".encode()).hexdigest()
    lineage = {"model_dir": str(ckpt.path), "weights_sha256": ckpt.sha256, "text_versions": mg.text_versions,
               "train_cutoff": ckpt.info["cutoff"], "train": ckpt.info["metrics"],
               "evaluation": ckpt.info.get("evaluation")}
    out = []
    for entity in cfg.entities:
        family, emb = FAMILIES[entity], z[entity].numpy().astype(np.float32)
        with family_lock(target, [family]), connect(target) as conn:
            with conn.transaction():
                v, created = store.find_or_create(conn, family=family, entity=entity, dim=emb.shape[1],
                                                  kind="graph_embedding", fingerprint=fingerprint,
                                                  model=str(ckpt.path))
                store.ensure_staging(conn, v)
            done = v.status != "building" and _rows_from(conn, v, cutoff, source) == len(emb)  # candidates too
            if not done:
                frame = pd.DataFrame({"entity_id": mg.node_ids[entity], "valid_from": cutoff,
                                      "source_md5": source})
                with tqdm(total=len(frame), desc=f"write {v.name}", unit="row", disable=not progress) as bar:
                    for start in range(0, len(frame), cfg.commit_every):
                        stop = start + cfg.commit_every
                        store.stage(conn, v, frame.iloc[start:stop], emb[start:stop])
                        bar.update(len(frame.iloc[start:stop]))
            run = {"cutoff": cutoff.isoformat(), "embedded": 0 if done else len(emb), "entities": len(emb),
                   "unseen_in_training": int((~known[entity]).sum()),
                   "build_seconds": round(build_seconds, 2), "infer_seconds": round(infer_seconds, 2),
                   "rows_per_second": round(sum(len(x) for x in z.values()) / infer_seconds, 1)}
            store.publish(conn, v, metrics={"last_run": run, **lineage}, hnsw_m=cfg.hnsw_m,
                          hnsw_ef_construction=cfg.hnsw_ef_construction, analyze=not done,
                          status="candidate" if cfg.candidate else "published",
                          await_feast=cfg.await_feast)
            joint = store_joint_map(conn, ckpt, entity, v.version)
            conn.commit()
            if joint is not None:
                run["compat_map"] = {"to_version": ckpt.info["align"][entity]["to_version"], "method": "bc_aligner",
                                     "heldout": joint.get("heldout")}
        out.append({"family": family, "version": v.version, "feature_view": v.name, "new_version": created,
                    "dim": v.dim, **run, "seconds": round(time.time() - started, 2)})
    return out

