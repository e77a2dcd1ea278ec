"""Linear compatibility maps between embedding vintages (STAR paper §4.6, eq. 8–9): y_old ≈ W x_new + b.

    x_new (n, d_new), y_old (n, d_old): the same n entities in both versions, rows aligned by the caller
      -> fit: permute(seed) -> train | held-out -> ridge normal equations on train -> metrics on held-out
              -> refit on all rows -> CompatMap(matrix W (d_old, d_new), bias b (d_old,), metrics)
      -> apply(x) = x Wᵀ + b          rows are NOT re-normalised unless normalize=True
    stored pairs --chain_path (BFS)--> [(k, k-1), (k-1, j)] --load each, compose--> one map k -> j
    store / load / stored_pairs: star.embedding_compat (matrix as a 2-D float8[], bias, fit_metrics jsonb)

Everything is float64 numpy; only store, load and stored_pairs touch the database.
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass, field

import numpy as np
import psycopg
from psycopg.types.json import Jsonb

from star.common import ridge_solve
from star.errors import StarError

# FIELD-NOTES: a held-out mean cosine >= 0.97 took >= 2k shared entities (500 -> 0.942, 2k -> 0.977).
FEW_SHARED_HINT = "FIELD-NOTES: maps need ≥ 2k shared entities for mean cosine ≥ 0.97"


class CompatError(StarError):
    """A compatibility map cannot be fitted, chained, applied, stored or found as asked."""


@dataclass(frozen=True, kw_only=True)
class CompatMap:
    family: str = field(metadata={"help": "embedding family both versions belong to"})
    from_version: int = field(metadata={"help": "the version whose vectors go in (usually the newer one)"})
    to_version: int = field(metadata={"help": "the version whose space comes out (usually the older one)"})
    matrix: np.ndarray = field(metadata={"help": "W, shape (to_dim, from_dim): y ≈ W x + b"})
    bias: np.ndarray | None = field(default=None, metadata={"help": "b, shape (to_dim,); None = no bias"})
    metrics: dict = field(default_factory=dict, metadata={"help": "fit metrics, or the chain for composed maps"})

    def __post_init__(self):
        m = np.asarray(self.matrix, dtype=np.float64)
        if m.ndim != 2:
            raise CompatError(f"{self.family} v{self.from_version}->v{self.to_version}: matrix has shape {m.shape}; "
                              "expected 2-D (to_dim, from_dim)")
        object.__setattr__(self, "matrix", m)
        if self.bias is not None:
            b = np.asarray(self.bias, dtype=np.float64)
            if b.shape != (m.shape[0],):
                raise CompatError(f"{self.family} v{self.from_version}->v{self.to_version}: bias has shape "
                                  f"{b.shape}; expected ({m.shape[0]},) to match the matrix {m.shape}")
            object.__setattr__(self, "bias", b)

    @property
    def path(self) -> tuple[int, int]:
        return self.from_version, self.to_version

    @property
    def from_dim(self) -> int:
        return self.matrix.shape[1]

    @property
    def to_dim(self) -> int:
        return self.matrix.shape[0]

    def apply(self, x: np.ndarray, *, normalize: bool = False) -> np.ndarray:
        """Map rows (n, from_dim) or one vector (from_dim,) into the old space. The result is not unit length
        (cosine search does not care; inner-product search does): pass normalize=True to L2-normalise rows."""
        x = np.asarray(x, dtype=np.float64)
        if x.ndim not in (1, 2) or x.shape[-1] != self.from_dim:
            raise CompatError(f"{self.family} v{self.from_version}->v{self.to_version} maps {self.from_dim}-d "
                              f"vectors; got shape {x.shape}: pass (n, {self.from_dim}) or ({self.from_dim},) "
                              f"vectors of v{self.from_version}")
        y = x @ self.matrix.T
        if self.bias is not None:
            y = y + self.bias
        if normalize:
            y = y / np.maximum(np.linalg.norm(y, axis=-1, keepdims=True), np.finfo(np.float64).tiny)
        return y


def _row_cos(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    tiny = np.finfo(np.float64).tiny
    return (a * b).sum(1) / np.maximum(np.linalg.norm(a, axis=1) * np.linalg.norm(b, axis=1), tiny)


def metrics(pred: np.ndarray, y: np.ndarray) -> dict:
    """r2 over all dims (None when y is constant), row cosine mean / p5 / min, mean row L2 error, n."""
    pred, y = np.asarray(pred, dtype=np.float64), np.asarray(y, dtype=np.float64)
    sse, sst = ((pred - y) ** 2).sum(), ((y - y.mean(0)) ** 2).sum()
    cos = _row_cos(pred, y)
    r = {"r2": 1 - sse / sst if sst > 0 else None, "cos_mean": cos.mean(), "cos_p5": np.percentile(cos, 5),
         "cos_min": cos.min(), "l2_mean": np.linalg.norm(pred - y, axis=1).mean()}
    return {**{k: None if v is None else round(float(v), 6) for k, v in r.items()}, "n": len(y)}


def fit(x_new: np.ndarray, y_old: np.ndarray, *, family: str, from_version: int, to_version: int,
        ridge: float = 1e-3, bias: bool = True, holdout: float = 0.2, seed: int = 0, min_shared: int = 50) -> CompatMap:
    """Fit y_old ≈ W x_new + b. Metrics come from a held-out split; the stored W is refit on all rows. With
    holdout=0 there are no held-out metrics (metrics["heldout"] is None): in-sample ones ("train") flatter the map
    and must not be read as its quality."""
    where = f"{family} v{from_version}->v{to_version}"
    x, y = np.asarray(x_new, dtype=np.float64), np.asarray(y_old, dtype=np.float64)
    if x.ndim != 2 or y.ndim != 2 or len(x) != len(y) or 0 in (x.shape[1], y.shape[1]):
        raise CompatError(f"{where}: x_new has shape {x.shape} and y_old {y.shape}; expected 2-D arrays with one "
                          "row per shared entity in the same order: align both versions on the entity id first")
    n = len(x)
    if n < max(min_shared, 1):
        raise CompatError(f"{where}: only {n} shared rows, min_shared={min_shared}; embed more of the same "
                          f"entities in both versions ({FEW_SHARED_HINT})")
    if not (np.isfinite(x).all() and np.isfinite(y).all()):
        raise CompatError(f"{where}: x_new has {int((~np.isfinite(x)).any(1).sum())} and y_old "
                          f"{int((~np.isfinite(y)).any(1).sum())} rows with NaN or inf; drop or re-embed those rows")
    if not ridge >= 0:
        raise CompatError(f"{where}: ridge={ridge}; expected ridge >= 0 (default 1e-3)")
    if not 0 <= holdout < 1:
        raise CompatError(f"{where}: holdout={holdout}; expected a fraction in [0, 1) (0 = no held-out rows)")
    k = min(max(round(n * holdout), 1 if holdout > 0 else 0), n - 1)
    order = np.random.default_rng(seed).permutation(n)
    test, train = order[:k], order[k:]
    w, b = ridge_solve(x[train], y[train], ridge, bias)
    fitted = CompatMap(family=family, from_version=from_version, to_version=to_version, matrix=w, bias=b)
    held = metrics(fitted.apply(x[test]), y[test]) if k else None
    train_m = metrics(fitted.apply(x[train]), y[train])
    no_map = round(float(_row_cos(x, y).mean()), 6) if x.shape[1] == y.shape[1] else None
    common = {"no_map_cos_mean": no_map, "ridge": ridge, "bias": bias, "shared": n, "holdout_rows": k,
              "from_dim": x.shape[1], "to_dim": y.shape[1]}
    if held is not None and no_map is not None:
        # a mild drift (e.g. a few LoRA steps) is reproduced better by no map than by a d x d fit on few rows,
        # which overfits: then the identity serves, judged on the same held-out rows
        same = metrics(x[test], y[test])
        if same["cos_mean"] >= held["cos_mean"]:
            return CompatMap(family=family, from_version=from_version, to_version=to_version,
                             matrix=np.eye(x.shape[1]), bias=None, metrics={
                                 "method": "identity", "heldout": same, "train": metrics(x[train], y[train]),
                                 "ridge_heldout": held, **common})
    w, b = ridge_solve(x, y, ridge, bias)  # held-out metrics describe generalisation; the map itself uses every row
    return CompatMap(family=family, from_version=from_version, to_version=to_version, matrix=w, bias=b, metrics={
        "method": "ridge", "heldout": held, "train": train_m, **common})


def compose(maps: list[CompatMap]) -> CompatMap:
    """One map for a chain given in order of application: maps[0] is k -> k-1, the last ends at j."""
    if not maps:
        raise CompatError("compose() got no maps; pass the chain in order of application, e.g. [v3->v2, v2->v1]")
    first = maps[0]
    w, b = first.matrix, first.bias
    for prev, m in zip(maps, maps[1:]):
        if m.family != first.family or m.from_version != prev.to_version or m.from_dim != prev.to_dim:
            raise CompatError(
                f"broken chain: {prev.family} v{prev.from_version}->v{prev.to_version} ({prev.to_dim}-d out) is "
                f"followed by {m.family} v{m.from_version}->v{m.to_version} ({m.from_dim}-d in); each map must "
                f"start where the previous one ends (same family, v{prev.to_version}); order the maps by application")
        w = m.matrix @ w
        b = None if b is None else m.matrix @ b
        if m.bias is not None:
            b = m.bias if b is None else b + m.bias
    return CompatMap(family=first.family, from_version=first.from_version, to_version=maps[-1].to_version,
                     matrix=w, bias=b, metrics={"chained": [list(m.path) for m in maps], "composed": True})


def chain_path(available: list[tuple[int, int]], start: int, goal: int, *, family: str = "FAMILY"
               ) -> list[tuple[int, int]]:
    """Fewest stored (from, to) maps leading from start to goal (BFS); [] when start == goal."""
    edges = sorted({(int(a), int(b)) for a, b in available})
    came: dict[int, tuple[int, int] | None] = {start: None}
    queue = deque([start])
    while queue and goal not in came:
        v = queue.popleft()
        for e in edges:
            if e[0] == v and e[1] not in came:
                came[e[1]] = e
                queue.append(e[1])
    if goal not in came:
        near = min(came, key=lambda v: (abs(v - goal), v))  # the reachable version closest to the goal
        raise CompatError(f"no compat path from v{start} to v{goal} in {family}: stored maps are {edges}; fit the "
                          f"missing map with `star compat fit {family} --from {near} --to {goal}`")
    path: list[tuple[int, int]] = []
    while came[goal] is not None:
        path.append(came[goal])
        goal = came[goal][0]
    return path[::-1]


UPSERT = """
INSERT INTO star.embedding_compat (family, from_version, to_version, matrix, bias, fit_metrics)
VALUES (%(family)s, %(from_version)s, %(to_version)s, %(matrix)s, %(bias)s, %(metrics)s)
ON CONFLICT (family, from_version, to_version) DO UPDATE
SET matrix = EXCLUDED.matrix, bias = EXCLUDED.bias, fit_metrics = EXCLUDED.fit_metrics, created_at = now()
"""
SELECT_MAP = """
SELECT matrix, bias, fit_metrics FROM star.embedding_compat
WHERE family = %(family)s AND from_version = %(from_version)s AND to_version = %(to_version)s
"""


def store(conn: psycopg.Connection, m: CompatMap) -> None:
    """Upsert the map (in the caller's transaction: commit is the caller's). Both versions must exist, with the
    dims of the matrix."""
    from star.store import registry

    dims = registry.dims(conn, m.family, list(m.path))
    for v, d in ((m.from_version, m.from_dim), (m.to_version, m.to_dim)):
        if v not in dims:
            raise CompatError(f"{m.family} v{v} is not in {registry.TABLE}; a map can only link existing "
                              "versions: embed that version first, or check the family and version numbers")
        if dims[v] is not None and dims[v] != d:
            raise CompatError(f"{m.family} v{m.from_version}->v{m.to_version}: the matrix has {d}-d on the v{v} "
                              f"side but v{v} holds {dims[v]}-d vectors; refit the map from that version's vectors")
    conn.execute(UPSERT, {"family": m.family, "from_version": m.from_version, "to_version": m.to_version,
                          "matrix": m.matrix.tolist(), "bias": None if m.bias is None else m.bias.tolist(),
                          "metrics": Jsonb(m.metrics)})


def stored_pairs(conn: psycopg.Connection, family: str) -> list[tuple[int, int]]:
    return [tuple(r) for r in conn.execute(
        "SELECT from_version, to_version FROM star.embedding_compat WHERE family = %s ORDER BY 1, 2", (family,))]


def load(conn: psycopg.Connection, family: str, from_version: int, to_version: int) -> CompatMap:
    r = conn.execute(SELECT_MAP, {"family": family, "from_version": from_version, "to_version": to_version}
                     ).fetchone()
    if r is None:
        raise CompatError(f"no compat map {family} v{from_version}->v{to_version}: stored maps for {family} are "
                          f"{stored_pairs(conn, family)}; fit it with "
                          f"`star compat fit {family} --from {from_version} --to {to_version}`")
    matrix, bias, fit_metrics = r
    return CompatMap(family=family, from_version=from_version, to_version=to_version, matrix=np.array(matrix),
                     bias=None if bias is None else np.array(bias), metrics=fit_metrics)
