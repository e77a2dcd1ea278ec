"""Helpers every package shares: the entity names, ROC AUC and seeding a run.

    ENTITIES, ID_COLUMN   the two entity types and their key columns (marketplace files, tables, Feast entities)
    roc_auc               sklearn.metrics.roc_auc_score, None where the AUC is undefined (text, graph, ranker, gate)
    seed_run              transformers.set_seed: Python, NumPy and torch (CPU and every GPU) at once
    ridge_solve           ridge least squares: compat maps (star.versions.compat), the aligner's refit (star.graph)

Importing this module loads neither torch, sklearn nor transformers (the ingestion path imports it).
"""

from __future__ import annotations

import numpy as np

ENTITIES = ("member", "job")
ID_COLUMN = {"member": "member_id", "job": "job_id"}


def roc_auc(labels, scores) -> float | None:
    """ROC AUC of `scores` against 0/1 `labels` (ties count one half). None when only one class is present or a
    score is NaN / infinite (a diverged model): the AUC is then undefined, and callers report it as such."""
    y, s = np.asarray(labels).astype(int), np.asarray(scores, dtype=np.float64)
    if y.size == 0 or y.min() == y.max() or not np.isfinite(s).all():
        return None
    from sklearn.metrics import roc_auc_score  # here: half a second to import, and only scorers need it

    return float(roc_auc_score(y, s))


def seed_run(seed: int) -> None:
    """Seed Python's `random`, NumPy's global generator and torch's (CPU and every GPU) for a reproducible run."""
    from transformers import set_seed  # here: seconds to import, and only training runs need it

    set_seed(seed)


def ridge_solve(x: np.ndarray, y: np.ndarray, ridge: float, bias: bool) -> tuple[np.ndarray, np.ndarray | None]:
    """Ridge normal equations on [x, 1]; the penalty is ridge × mean diagonal of xᵀx, never on the bias column."""
    a = np.hstack([x, np.ones((len(x), 1))]) if bias else x
    g = a.T @ a
    d = x.shape[1]
    g[np.arange(d), np.arange(d)] += ridge * np.trace(g[:d, :d]) / d
    rhs = a.T @ y
    try:
        beta = np.linalg.solve(g, rhs)
    except np.linalg.LinAlgError:  # singular (e.g. ridge=0 with fewer rows than dims): minimum-norm solution
        beta = np.linalg.lstsq(g, rhs, rcond=None)[0]
    return beta[:d].T, (beta[d] if bias else None)
