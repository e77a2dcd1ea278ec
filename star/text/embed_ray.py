"""The text embedding job's encode step on a Ray cluster (`star text embed --engine ray`): same rows in, same
staging table out, so the publish step (star/text/embed.py) and the kill-safety are the local job's own.

    driver: store.pending(conn, v) (the local job's selection: new or changed md5, not already staged)
            -> sorted by text length -> one Ray Data block per commit_every rows
    actor pool of `workers` actors (each loads the encoder once, from an EncoderSpec, and checks it is the
            vintage's model): encode a block -> store.stage through the actor's own connection (one committed
            transaction per block) -> a one-row stats frame
    driver: sums the stats; embed.py then publishes from staging, unchanged

The pending rows are read on the driver and handed to ray.data.from_pandas rather than read by Ray Data in
partitions: `pending` is one anti-join against the vintage and its staging table, reading it once keeps the selection
exactly the local one, and the global sort by length needs every row anyway. The rows travel once (text + keys,
~1 KB each: ~1 GB per million texts); past that, read by entity_id ranges instead.

A worker that dies mid-block is restarted and its block retried (max_restarts / max_task_retries); a block that
fails for good (the model does not load on a worker, the database refuses the rows) ends the job in one
ClusterError before publish: the vintage stays 'building', the blocks that committed stay staged, and the next run
of either engine embeds only the rest. Ray is imported only here and in star/cluster.py.
"""

from __future__ import annotations

import re
import time
import warnings
from dataclasses import dataclass

import numpy as np
import pandas as pd
from tqdm.auto import tqdm

from star.cluster import ClusterError, EngineConfig
from star.config import DbTarget
from star.store.registry import VersionRow

RESTARTS = 3  # a worker that keeps dying (e.g. out of memory on every block) ends the job instead of looping


@dataclass(frozen=True, kw_only=True)
class EncoderSpec:
    """What rebuilds an encoder on a worker: its config and adapter directory (paths the workers must see too)."""

    model_cfg: dict
    adapter_dir: str | None
    fingerprint_hash: str  # the vintage's: a worker with another model refuses to embed into it

    @classmethod
    def of(cls, encoder, v: VersionRow) -> "EncoderSpec":
        return cls(model_cfg=encoder.cfg.to_dict(), adapter_dir=getattr(encoder, "adapter_dir", None),
                   fingerprint_hash=v.config["fingerprint_hash"])

    def build(self):
        import socket

        from star.store.embeddings import fingerprint_hash
        from star.text.config import TextModelConfig
        from star.text.model import TextEncoder

        encoder = TextEncoder(TextModelConfig.from_dict(self.model_cfg), adapter_dir=self.adapter_dir)
        encoder.eval()
        if fingerprint_hash(encoder.fingerprint()) != self.fingerprint_hash:
            raise ClusterError(f"the model at {encoder.cfg.model_dir} on Ray worker {socket.gethostname()} is not "
                               "the one the driver loaded (checksum differs): put the same model files at the same "
                               "path on every node, or use --engine local")
        return encoder


class StageBlocks:
    """A Ray Data actor: loads the encoder and a database connection once, then encodes and stages block by block."""

    def __init__(self, *, target: DbTarget, spec: EncoderSpec, version: VersionRow, batch_size: int):
        from star.db import connect

        self.encoder = spec.build()
        self.conn = connect(target)
        self.v, self.batch_size = version, batch_size

    def __call__(self, block: pd.DataFrame) -> pd.DataFrame:
        from star.store import embeddings as store

        try:
            result = self.encoder.encode(block["text"].tolist(), self.v.entity, batch_size=self.batch_size)
            store.stage(self.conn, self.v, block, np.asarray(result.embeddings, dtype=np.float32))
        except Exception as exc:  # e.g. psycopg's errors do not pickle: the driver gets this one line instead
            self.conn.rollback()
            first = next((line for line in str(exc).splitlines() if line.strip()), "")
            raise ClusterError(f"{type(exc).__name__}: {first}") from None
        return pd.DataFrame({"texts": [len(block)], "truncated": [int(result.truncated)],
                             "chunks": [result.chunks], "max_chunks": [result.max_chunks],
                             "seconds": [float(result.seconds)]})


def by_length(todo: pd.DataFrame, size: int) -> list[pd.DataFrame]:
    """The pending rows, longest text first (similar lengths share a block: less padding, and the slow blocks
    start first), cut into blocks of `size` rows."""
    order = np.argsort(-todo["text"].str.len().to_numpy(), kind="stable")
    ordered = todo.iloc[order].reset_index(drop=True)
    return [ordered.iloc[lo:lo + size] for lo in range(0, len(ordered), size)]


def encode_and_stage(target: DbTarget, encoder, v: VersionRow, todo: pd.DataFrame, *, batch_size: int,
                     commit_every: int, engine: EngineConfig, progress: bool = True) -> dict:
    """Encode `todo` on the cluster (inside ray_session) into v's staging table; the summed stats."""
    import ray
    from ray.data import DataContext

    stats = {"texts": 0, "truncated": 0, "chunks": 0, "max_chunks": 0, "seconds": 0.0}
    if todo.empty:
        return stats
    cpus = int(ray.cluster_resources().get("CPU", 0))
    if cpus < engine.workers:
        raise ClusterError(f"the Ray cluster has {cpus} CPU(s) but --workers {engine.workers} needs one per "
                           f"worker: pass --workers {max(cpus, 1)} or add nodes")
    ctx = DataContext.get_current()
    ctx.enable_progress_bars = False  # the job's own bar counts texts
    ctx.print_on_execution_start = False
    blocks = by_length(todo[["entity_id", "valid_from", "text_md5", "text"]], commit_every)
    ds = ray.data.from_pandas(blocks)
    with warnings.catch_warnings():  # Ray 2.60 takes the restart limits only as (deprecated) ray_remote_args
        warnings.filterwarnings("ignore", message=".*ray_remote_args.* is deprecated")
        out = ds.map_batches(StageBlocks, batch_format="pandas", batch_size=commit_every, num_cpus=1,
                             compute=ray.data.ActorPoolStrategy(size=min(engine.workers, len(blocks))),
                             max_restarts=RESTARTS, max_task_retries=RESTARTS,
                             fn_constructor_kwargs={"target": target, "spec": EncoderSpec.of(encoder, v),
                                                    "version": v, "batch_size": batch_size})
    started = time.perf_counter()
    try:
        with tqdm(total=len(todo), desc=f"embed {v.name} on ray", unit="text", disable=not progress) as bar:
            for batch in out.iter_batches(batch_size=None, batch_format="pandas"):
                for key in ("texts", "truncated", "chunks"):
                    stats[key] += int(batch[key].sum())
                stats["max_chunks"] = max(stats["max_chunks"], int(batch["max_chunks"].max()))
                stats["seconds"] += float(batch["seconds"].sum())
                bar.update(int(batch["texts"].sum()))
    except Exception as exc:  # Ray wraps the worker's error (RayTaskError, UserCodeException, ActorDiedError)
        raise ClusterError(f"the Ray job embedding {v.name} failed for good: {_root(exc)}. The blocks that finished "
                           f"are staged and {v.name} stays 'building' (not served); fix the cause and run "
                           "`star text embed` again, with either engine, to finish it") from exc
    stats["wall_seconds"] = time.perf_counter() - started
    return stats


_RAISED = re.compile(r"^([A-Za-z_][\w.]*(?:Error|Exception)): (.+)$")


def _root(exc: BaseException) -> str:
    """The worker's own error on one line: Ray passes it only as text, the remote traceback inside its message."""
    raised = [m.groups() for line in str(exc).splitlines() if (m := _RAISED.match(line.strip()))
              and not m.group(1).startswith("ray.")]
    if not raised:
        return f"{type(exc).__name__}: {next((ln for ln in str(exc).splitlines() if ln.strip()), '')}"[:400]
    name, message = raised[-1]
    return (message if name.endswith("ClusterError") else f"{name.rpartition('.')[2]}: {message}")[:400]
