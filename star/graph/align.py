"""BC-Aligner-style joint training (Hu et al., KDD 2022): a new graph model learns, together with its tasks, a
linear map into the previous vintage's space, and its alignment error is pushed through every earlier stored map,
so chains k -> k-1 -> ... -> j stay accurate after the old vintages' rows are gone.

    previous vintages of member_graph_embedding / job_graph_embedding (their lineage names the model directory)
        --each old model re-run on the training graph (point in time: the graph the new model sees)--> z_j
    loss = task loss + align_weight * sum_entity sum_j  mean_batch | C_{k-1 -> j}(W z_k + b) - z_j |^2
        W, b   learned with the model (one Linear per entity type); before the first epoch and after each one
               reset to the ridge fit of the current whole-graph embeddings onto z_{k-1}, then refined by gradients
        C      the stored compat maps k-1 -> j, fixed (identity for j = k-1); j without a stored path is left out
    checkpoint: W, b per entity + which vintage they map to; `star graph embed` stores them as the compat map
    vK -> v(k-1) (metrics["method"] = "bc_aligner"), which `star compat fit` / `star versions publish` keep unless a
    ridge refit is better by more than lifecycle.CHAIN_TOLERANCE mean cosine on held-out entities.
"""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np
import torch

from star.config import DbTarget
from star.db import connect
from star.errors import ConfigError
from star.graph.aligner import AlignTarget
from star.graph.config import FAMILIES
from star.graph.inputs import positions
from star.store import registry

__all__ = ["alignment_targets", "store_joint_map"]

log = logging.getLogger(__name__)
ALIGNABLE = ("published", "deprecated", "retired", "candidate")


def alignment_targets(target: DbTarget, mg, *, to_version: int | None = None,
                      entities: tuple[str, ...] = ("member", "job")) -> dict[str, AlignTarget]:
    """AlignTarget per entity: the vintage to align to (default: the newest published one of each family) and
    every earlier vintage with its model directory and a stored compat path from it. The old models are re-run
    on the graph at mg.cutoff, so no target holds information from after the new model's cutoff."""
    from star.graph import checkpoint
    from star.graph.build import build_graph
    from star.graph.train import infer
    from star.versions import compat

    out = {}
    with connect(target) as conn:
        for entity in entities:
            family = FAMILIES[entity]
            rows = [(r.version, r.status, r.model, r.metrics.get("weights_sha256"))
                    for r in registry.rows(conn, family, kind="graph_embedding") if r.status in ALIGNABLE]
            if to_version is None:
                published = [r for r in rows if r[1] == "published"]
                if not published:
                    raise ConfigError(f"align: {family} has no published vintage to align to; publish one first "
                                      "(`star graph embed`) or train without --align")
                prev = published[-1]
            else:
                found = [r for r in rows if r[0] == to_version]
                if not found:
                    raise ConfigError(f"align: {family} v{to_version} does not exist or is still building; "
                                      f"alignable vintages: {[r[0] for r in rows]}")
                prev = found[0]
            pairs = compat.stored_pairs(conn, family)
            chain = [(prev, None)]
            for r in rows:
                if r[0] >= prev[0]:
                    continue
                try:
                    path = compat.chain_path(pairs, prev[0], r[0], family=family)
                except compat.CompatError:
                    log.info("align: no stored map path %s v%d -> v%d; that vintage is left out", family, prev[0],
                             r[0])
                    continue
                chain.append((r, compat.compose([compat.load(conn, family, a, b) for a, b in path])))
            steps, to_dim = [], None
            for (version, _, model_dir, sha256), m in chain:
                where = f"align: {family} v{version}"
                if not model_dir or not Path(model_dir).exists():
                    if version == prev[0]:
                        raise ConfigError(f"{where}: its model directory {model_dir!r} is gone; restore it or "
                                          "align to another vintage (--align-to)")
                    log.info("%s: model directory %r is gone; left out", where, model_dir)
                    continue
                ckpt = checkpoint.load(Path(model_dir))
                if sha256 and ckpt.sha256 != sha256:
                    raise ConfigError(f"{where}: {model_dir} holds weights {ckpt.sha256[:12]}… but the vintage "
                                      f"was written by {sha256[:12]}…; restore that model or align to another one")
                old_mg = build_graph(target, checkpoint.graph_config(ckpt, mg.cutoff))
                model, features = checkpoint.adapt(ckpt, old_mg)
                z_old = infer(model, old_mg.graph, features)[entity]
                pos, found = positions(old_mg.node_ids[entity], mg.node_ids[entity])
                z = torch.zeros(len(found), z_old.shape[1])
                z[torch.from_numpy(np.nonzero(found)[0])] = z_old[torch.from_numpy(pos[found])]
                mask = torch.from_numpy(found)
                if m is None:
                    to_dim = z_old.shape[1]
                    steps.append((version, None, None, z, mask))
                else:
                    bias = m.bias if m.bias is not None else np.zeros(m.to_dim)
                    steps.append((version, torch.from_numpy(m.matrix).float(), torch.from_numpy(bias).float(), z,
                                  mask))
            out[entity] = AlignTarget(family=family, to_version=prev[0], to_dim=to_dim, steps=steps)
            log.info("align %s to v%d through %s", family, prev[0], [s[0] for s in steps])
    return out


def store_joint_map(conn, ckpt, entity: str, version: int) -> dict | None:
    """Store the checkpoint's trained map for `entity` as the compat map `version` -> its target vintage, measured
    on the current rows of both (rows the aligner never saw: it was trained on the graph at the training cutoff).
    A map already stored for that pair is left as it is. Returns the stored metrics (None: nothing stored)."""
    from star.versions import compat
    from star.versions.lifecycle import shared_vectors, version_row

    a = (ckpt.info.get("align") or {}).get(entity)
    if ckpt.aligner is None or a is None or a["to_version"] == version:
        return None
    family, to = a["family"], a["to_version"]
    if (version, to) in compat.stored_pairs(conn, family):
        return None
    lin = ckpt.aligner.maps[entity]
    w, b = lin.weight.detach().double().numpy(), lin.bias.detach().double().numpy()
    trained = (ckpt.info["metrics"].get("align_cos") or [{}])[-1].get(family)
    metrics = {"method": "bc_aligner", "model_dir": str(ckpt.path), "through": a["through"],
               "train_align_cos": trained, "from_dim": w.shape[1], "to_dim": w.shape[0], "bias": True}
    if version_row(conn, family, to)["status"] in ("candidate", "published", "deprecated"):
        shared, xs, ys = shared_vectors(conn, family, version, to, entity)
        if shared:
            m = compat.CompatMap(family=family, from_version=version, to_version=to, matrix=w, bias=b)
            metrics.update(heldout=compat.metrics(m.apply(xs), ys), shared=len(shared), holdout_rows=len(shared),
                           no_map_cos_mean=(round(float(compat.metrics(xs, ys)["cos_mean"]), 6)
                                            if xs.shape[1] == ys.shape[1] else None))
    compat.store(conn, compat.CompatMap(family=family, from_version=version, to_version=to, matrix=w, bias=b,
                                        metrics=metrics))
    return metrics
