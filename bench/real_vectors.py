"""Vectors from real text for the benchmarks: ESCO/O*NET texts through the shipped MiniLM (cached under bench/cache/),
and the linear maps into each bench vintage's space (bench/serving.py's docstring says what each is).

    minilm_vectors(texts)          384-d MiniLM embeddings, cached by chunks of 50k texts
    Spaces(real, dim).rows(n, ...) row i = real text (i + offset) mod len(real), + noise of norm NOISE once the real
                                   texts are used up; member_v2 (PCA), member_v1 (Gaussian projection), graph_of
"""

from __future__ import annotations

import hashlib

import numpy as np

from star.config import REPO_ROOT

GRAPH_DIM = 64
NOISE = 0.35
CACHE = REPO_ROOT / "bench" / "cache"


def minilm_vectors(texts: list[str], chunk: int = 50_000) -> np.ndarray:
    """MiniLM embeddings of `texts`, cached under bench/cache/ by chunks of `chunk` texts (a longer run reuses a
    shorter one's)."""
    from star.text.config import TextModelConfig
    from star.text.model import TextEncoder

    enc, parts = None, []
    for lo in range(0, len(texts), chunk):
        part = texts[lo:lo + chunk]
        path = CACHE / f"minilm_{lo}_{len(part)}_{hashlib.md5(chr(10).join(part).encode()).hexdigest()[:12]}.npy"
        if not path.exists():
            enc = enc or TextEncoder(TextModelConfig(max_length={"job": 128, "member": 128, "resume": 128},
                                                     prompts={"job": "", "member": "", "resume": ""}))
            CACHE.mkdir(parents=True, exist_ok=True)
            np.save(path, enc.encode(part, "member", batch_size=128, progress=True).embeddings)
        parts.append(np.load(path))
    return np.concatenate(parts)


def unit(x: np.ndarray) -> np.ndarray:
    return (x / np.maximum(np.linalg.norm(x, axis=1, keepdims=True), 1e-12)).astype(np.float32)


class Spaces:
    """The projections of a 384-d MiniLM vector into each vintage's space."""

    def __init__(self, real: np.ndarray, dim: int, seed: int = 0):
        rng = np.random.default_rng(seed)
        self.real = real
        mean = real.mean(axis=0)
        _, _, vt = np.linalg.svd(real[rng.choice(len(real), min(len(real), 50_000), replace=False)] - mean,
                                 full_matrices=False)
        self.mean, self.pca = mean, vt[:dim].T.astype(np.float32)
        self.gauss = rng.normal(size=(384, dim)).astype(np.float32) / np.sqrt(dim)
        self.graph = rng.normal(size=(384, GRAPH_DIM)).astype(np.float32) / np.sqrt(GRAPH_DIM)

    def rows(self, n: int, offset: int, seed: int) -> np.ndarray:
        """Row i: real text (i + offset) mod len(real), with noise once the real texts are used up."""
        rng = np.random.default_rng(seed)
        idx = np.arange(offset, offset + n) % len(self.real)
        x = self.real[idx].copy()
        derived = np.arange(n) + offset >= len(self.real)
        if derived.any():
            noise = rng.normal(size=(int(derived.sum()), x.shape[1])).astype(np.float32)
            x[derived] += NOISE * noise / np.linalg.norm(noise, axis=1, keepdims=True)
        return x

    def member_v2(self, x):
        return unit((x - self.mean) @ self.pca)

    def member_v1(self, x):
        return unit(x @ self.gauss)

    def graph_of(self, x, seed):
        rng = np.random.default_rng(seed)
        return unit(x @ self.graph + 0.3 * rng.normal(size=(len(x), GRAPH_DIM)).astype(np.float32) / 8)
