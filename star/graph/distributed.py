"""Distributed (DDP) training of the graph model: `star graph train --workers N`.

    driver   graph built once (the DB read) --pickle--> a private temp dir --> N processes (torch.multiprocessing
             spawn), rendezvous through a file in that dir, torch.distributed with gloo (the model trains on CPU)
    rank r   train_gnn(..., dist=Shard(r, N)): model + decoder (+ aligner) in DistributedDataParallel, gradients
             averaged at every step; per epoch one shuffle of the training edges shared by all ranks, rank r takes
             every N-th edge (padded to equal length, so every rank takes the same number of steps); global batch =
             batch_size (batch_size / N per rank), so an epoch is the same number of steps on the same edges
             validation: layer-wise inference split by node ranges, each layer summed across the ranks (identical
             embeddings everywhere); rank 0 decides the fanouts and the early stop, broadcast to the others
    rank 0   --> result.pt (weights, metrics, every rank's fanouts) --> driver --> GraphTrainResult, which the caller
             saves with checkpoint.save exactly as for one process
    failure  a worker that dies or raises: the others are stopped, one GraphTrainError (or the worker's own
             StarError) names the ranks and exit codes; the temp dir goes, no model is written

Test hook (real process death, not a mock): STAR_TEST_DDP_EXIT="RANK:STEP" makes that rank os._exit(17) before
its STEP-th training step.
"""

from __future__ import annotations

import logging
import math
import os
import pickle
import signal
import tempfile
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path

import torch
import torch.distributed as dist
import torch.multiprocessing as mp

from star.errors import StarError, require_at_least
from star.graph.dgl_compat import import_dgl
from star.graph.train import train_gnn

__all__ = ["GraphTrainError", "Shard", "train_distributed"]

EXIT_HOOK = "STAR_TEST_DDP_EXIT"


class GraphTrainError(StarError):
    """Distributed graph training failed (a worker died or raised); nothing was written."""


@dataclass(frozen=True)
class Shard:
    """One rank's view of a distributed run: what train_gnn asks it for."""

    rank: int
    world: int

    def wrap(self, step: torch.nn.Module) -> torch.nn.Module:
        import inspect

        from torch.nn.parallel import DistributedDataParallel

        # buffers (the text basis) are identical on every rank: no sync per step (the option's newer name if any)
        quiet = "forward_sync_buffers" if "forward_sync_buffers" in inspect.signature(
            DistributedDataParallel).parameters else "broadcast_buffers"
        # a batch may lack a relation or task, leaving some parameters without a gradient on one rank
        ddp = DistributedDataParallel(step, find_unused_parameters=True, **{quiet: False})
        hook = os.environ.get(EXIT_HOOK, "")
        if hook:
            rank, at = (int(x) for x in hook.split(":"))
            if rank == self.rank:
                calls = [0]

                def die(*_):
                    calls[0] += 1
                    if calls[0] >= at:
                        os._exit(17)
                step.register_forward_pre_hook(die)
        return ddp

    def batch_size(self, global_batch: int) -> int:
        return max(1, math.ceil(global_batch / self.world))

    def seed(self, seed: int) -> int:
        """Each rank its own negatives and neighbour draws."""
        return seed + 7919 * self.rank

    def edges(self, train_eids: dict, seed: int) -> dict:
        """This rank's disjoint share of one shuffle (the same on every rank) of each task's training edges, padded
        by wrapping to a multiple of the world size (as torch's DistributedSampler does)."""
        gen = torch.Generator().manual_seed(seed)
        out = {}
        for t, eids in train_eids.items():
            eids = torch.as_tensor(eids)
            perm = eids[torch.randperm(len(eids), generator=gen)]
            pad = -len(perm) % self.world
            if pad and len(perm):
                perm = torch.cat([perm, perm.repeat(math.ceil(pad / len(perm)))[:pad]])
            out[t] = perm[self.rank::self.world]
        return out

    def nodes(self, ids: torch.Tensor) -> torch.Tensor:
        return torch.tensor_split(ids, self.world)[self.rank]

    def sum(self, x: torch.Tensor) -> torch.Tensor:
        dist.all_reduce(x)
        return x

    def decide(self, adaptive, stop: bool) -> bool:
        """Rank 0's fanouts and stop flag, broadcast; the other ranks follow them."""
        message = torch.tensor([float(stop), *(adaptive.fanouts if adaptive else ())], dtype=torch.float64)
        dist.broadcast(message, src=0)
        if adaptive is not None and self.rank:
            adaptive.follow(message[1:].long().tolist())
        return bool(message[0])


def _worker(rank: int, world: int, tmp: str, threads: int, progress: bool) -> None:
    torch.set_num_threads(threads)
    import_dgl()  # before unpickling the graph (the graphbolt stub)
    tmp = Path(tmp)
    try:
        dist.init_process_group("gloo", init_method=f"file://{tmp / 'rendezvous'}", rank=rank, world_size=world,
                                timeout=timedelta(minutes=30))
        mg, model_cfg, train_cfg, align = pickle.loads((tmp / "job.pkl").read_bytes())
        result = train_gnn(mg, model_cfg, train_cfg, progress=progress and rank == 0, align=align,
                           dist=Shard(rank, world))
        fanouts = [None] * world
        dist.all_gather_object(fanouts, result.metrics["fanouts"])
        if rank == 0:
            result.metrics["rank_fanouts"] = fanouts
            torch.save({"model": result.model.state_dict(), "decoder": result.decoder.state_dict(),
                        "aligner": result.aligner.state_dict() if result.aligner else None,
                        "tasks": result.tasks, "cut_ts": result.cut_ts, "metrics": result.metrics,
                        "align": result.align}, tmp / "result.part")
            os.replace(tmp / "result.part", tmp / "result.pt")
        dist.destroy_process_group()
    except BaseException as exc:
        try:
            (tmp / f"error-{rank}.pkl").write_bytes(pickle.dumps(exc))
        except Exception:  # an exception that does not pickle: its text
            (tmp / f"error-{rank}.pkl").write_bytes(pickle.dumps(GraphTrainError(f"{type(exc).__name__}: {exc}")))
        raise


def _code(code: int | None) -> str:
    if code is None:
        return "still running"
    if code < 0:
        return f"killed by {signal.Signals(-code).name}"
    return f"exit code {code}"


def _failure(tmp: Path, workers: int, codes: list[int | None], exc: Exception) -> StarError:
    errors = {}
    for rank in range(workers):
        path = tmp / f"error-{rank}.pkl"
        if path.exists():
            errors[rank] = pickle.loads(path.read_bytes())
    own = next((e for e in errors.values() if isinstance(e, StarError)), None)
    if own is not None:  # a clear error of ours (bad input): the same message as in one process
        return own
    # the rank that died first; then any that ended with neither an error report nor the SIGTERM that stops the rest
    died = [exc.error_index] if isinstance(exc, mp.ProcessExitedException) else []
    died += [r for r, c in enumerate(codes)
             if c not in (0, None, -signal.SIGTERM) and r not in errors and r not in died]
    parts = [f"worker rank {r} died ({_code(codes[r])})" for r in died[:1]]
    parts += [f"worker rank {r} failed: {type(e).__name__}: {str(e).strip().splitlines()[-1] if str(e) else ''}"
              for r, e in errors.items() if not died]
    states = ", ".join(f"rank {r}: {_code(c)}" for r, c in enumerate(codes))
    return GraphTrainError(f"distributed graph training with {workers} workers failed: {'; '.join(parts) or exc}. "
                           f"Worker states: {states} (the others are stopped after the first failure). No model was "
                           "written; re-run the command (training starts over), or use --workers 1")


def fit(mg, model_cfg, train_cfg, *, workers: int = 1, progress: bool = True, align=None):
    """train_gnn in this process (workers=1) or in `workers` processes under DDP (train_distributed)."""
    require_at_least("train_gnn", 1, workers=workers)
    if workers == 1:
        return train_gnn(mg, model_cfg, train_cfg, progress=progress, align=align)
    return train_distributed(mg, model_cfg, train_cfg, workers=workers, progress=progress, align=align)


def train_distributed(mg, model_cfg, train_cfg, *, workers: int, progress: bool = True, align=None):
    """train_gnn in `workers` processes under DDP; the GraphTrainResult of rank 0, as train_gnn returns it."""
    from star.graph.model import HeteroGNN, LinkDecoder, input_specs
    from star.graph.train import GraphTrainResult, _tasks, split_by_time

    # the clear input errors (no task edges, an empty split) here, once, before any process starts
    split_by_time(mg.graph, _tasks(mg.graph, train_cfg.tasks), train_cfg.val_fraction)
    threads = max(1, torch.get_num_threads() // workers)
    with tempfile.TemporaryDirectory(prefix="star-ddp-") as tmp:
        tmp = Path(tmp)
        (tmp / "job.pkl").write_bytes(pickle.dumps((mg, model_cfg, train_cfg, align)))
        ctx = mp.start_processes(_worker, args=(workers, str(tmp), threads, progress), nprocs=workers, join=False,
                                 start_method="spawn")
        spawn_log = logging.getLogger("torch.multiprocessing.spawn")
        level, _ = spawn_log.level, spawn_log.setLevel(logging.ERROR)  # its "Terminating process" line: ours says it
        try:
            while not ctx.join():
                pass
        except (mp.ProcessRaisedException, mp.ProcessExitedException) as exc:
            raise _failure(tmp, workers, [p.exitcode for p in ctx.processes], exc) from None
        finally:
            spawn_log.setLevel(level)
        out = torch.load(tmp / "result.pt", weights_only=False)  # our own file, written just now by rank 0
    tasks = [tuple(t) for t in out["tasks"]]
    model = HeteroGNN(model_cfg, input_specs(mg), mg.graph.canonical_etypes)
    model.load_state_dict(out["model"])
    decoder = LinkDecoder(model_cfg, tasks, {tuple(k): v for k, v in (train_cfg.task_weights or {}).items()})
    decoder.load_state_dict(out["decoder"])
    aligner = None
    if out["aligner"] is not None:
        from star.graph.aligner import Aligner

        aligner = Aligner(model_cfg.out_dim, {nt: t.to_dim for nt, t in align.items()})
        aligner.load_state_dict(out["aligner"])
        aligner.eval()
    model.eval()
    decoder.eval()
    return GraphTrainResult(model=model, decoder=decoder, tasks=tasks, cut_ts=out["cut_ts"], metrics=out["metrics"],
                            aligner=aligner, align=out["align"])
