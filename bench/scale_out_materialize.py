"""Scale-out, `materialize` part: `feast materialize` of one vector view through the default in-server engine vs
STAR's Ray engine (star/store/ray_engine.py) with 1 and 2 workers, same process, same data.

    .venv/bin/python bench/scale_out_materialize.py [--rows 100000] [--dim 64] [--configs default,ray1,ray2]

Each configuration gets a fresh database holding the same vectors (bench/materialize.py load_vectors) and
materializes it into an empty online table. One local Ray cluster of 2 CPUs is started before the runs (its start
is not timed; ray_session joins it), so ray1 vs ray2 shows what a second worker buys; ray1 vs default what the
staging costs. upsert_s is the final one-transaction upsert (serial on every path), hnsw_build_s the index build
after it; the rest of a Ray run is the staged slices, in parallel. On this machine 2 cores are shared with other
work: read the ratios as an upper bound of the overhead and a lower bound of the gain.
One JSON line per configuration, then the ratios; all of it to bench/results/scale_out_materialize.json.
"""

from __future__ import annotations

import argparse
import contextlib
import io
import json
import os
import sys
import time
from datetime import datetime, timezone
from pathlib import Path

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from bench.benchkit import StoreTimes, emit, feast_env, fresh_database  # noqa: E402
from bench.materialize import VIEW, load_vectors  # noqa: E402
from star import db  # noqa: E402
from star.pipeline import apply_features  # noqa: E402
from star.store.feast_repo import open_store  # noqa: E402

RESULTS = Path(__file__).parent / "results" / "scale_out_materialize.json"
RAY_ENGINE = "star.store.ray_engine.StarRayComputeEngine"
CONFIGS = {
    "default": {"STAR_FEAST_MODE": "star"},
    "ray1": {"STAR_FEAST_MODE": "ray", "STAR_BATCH_ENGINE": RAY_ENGINE, "workers": "1"},
    "ray2": {"STAR_FEAST_MODE": "ray", "STAR_BATCH_ENGINE": RAY_ENGINE, "workers": "2"},
}


def run(name: str, rows: int, dim: int) -> dict:
    config = dict(CONFIGS[name])
    workers = config.pop("workers", None)
    target = fresh_database(f"star_bench_scale_out_{name}")
    os.environ["STAR_RAY_WORKERS"] = workers or "2"
    try:
        with feast_env(config):
            load_vectors(target, rows, dim)
            with StoreTimes.attached() as times, contextlib.redirect_stdout(io.StringIO()), \
                    contextlib.redirect_stderr(io.StringIO()):
                apply_features(target)
                store = open_store(target)
                started = time.perf_counter()
                store.materialize(datetime(1970, 1, 1, tzinfo=timezone.utc), datetime.now(timezone.utc),
                                  feature_views=[VIEW])
                seconds = time.perf_counter() - started
        with db.connect(target) as conn:
            (online,) = conn.execute(f"SELECT count(*) FROM feast_online.star_{VIEW}").fetchone()
        assert online == rows, f"{name}: {online} online rows, expected {rows}"
        write = seconds - times.hnsw
        return emit({"config": name, "workers": int(workers) if workers else 1, "rows": rows, "dim": dim,
                     "seconds": round(seconds, 2), "rows_per_s": round(rows / seconds),
                     "upsert_s": round(times.upsert, 2), "hnsw_build_s": round(times.hnsw, 2),
                     "staged_slices_s": round(write - times.upsert, 2) if workers else None,
                     "rows_per_s_without_hnsw": round(rows / write)})
    finally:
        db.drop_database(target)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--rows", type=int, default=100_000)
    ap.add_argument("--dim", type=int, default=64)
    ap.add_argument("--configs", default="default,ray1,ray2")
    args = ap.parse_args()
    import ray

    os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False, logging_level="ERROR")
    try:
        results = {name: run(name, args.rows, args.dim) for name in args.configs.split(",")}
    finally:
        ray.shutdown()
    base = results.get("default")
    ratios = {"rows_per_s_vs_default": {n: round(r["rows_per_s"] / base["rows_per_s"], 2)
                                        for n, r in results.items() if n != "default"}} if base else {}
    if "ray1" in results and "ray2" in results:
        ratios["ray2_vs_ray1_rows_per_s"] = round(results["ray2"]["rows_per_s"] / results["ray1"]["rows_per_s"], 2)
        slices = results["ray1"]["staged_slices_s"], results["ray2"]["staged_slices_s"]
        ratios["ray2_vs_ray1_staged_slices"] = round(slices[0] / slices[1], 2) if slices[1] else None
    emit(ratios)
    RESULTS.parent.mkdir(exist_ok=True)
    RESULTS.write_text(json.dumps({"command": "bench/scale_out_materialize.py " + " ".join(sys.argv[1:]),
                                   "cores": os.cpu_count(), "runs": list(results.values()), **ratios},
                                  indent=1) + "\n")


if __name__ == "__main__":
    main()
