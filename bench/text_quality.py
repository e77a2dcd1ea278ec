"""Text quality on a synthetic marketplace: whole long texts vs truncation, prompts vs none, the fine-tune vs the
frozen baseline (Table-2 analogue) with and without hard negatives, each against TF-IDF on a later window.

    python bench/text_quality.py [--members 2000 --jobs 400 --seed 0] [--parts A,B] [--steps 60]
                                 [--train-tokens 128] [--hard-by occupation_group] [--noisy]

A: frozen MiniLM, nothing trained. The later window's pairs (`star text eval`'s evalset: each positive with 5 random
   unseen jobs, and again with 5 sharing the member's location) scored by TF-IDF and by the base model as STAR
   embedded before issue #15 (256 tokens, prompt prefixes), with each change alone, and as it does now.
B: fine-tunes on the pairs before that window (`star text train`'s compare: frozen_head = frozen MiniLM + trained
   head, the paper's baseline; bce+contrastive = LoRA), without and with `--hard-negatives-by`, at the same step
   budget; validation AUC relative to frozen (the Table-2 analogue), then each adapter's cosine on the later window.
--noisy replaces every text by a random other entity's (texts carry no signal: the control market).
Writes bench/results/text_quality[_short][_noisy].{json,md} (a part not run keeps the file's earlier result); prints one
JSON line per measurement.
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from dataclasses import replace
from pathlib import Path

import numpy as np

from benchkit import emit, fresh_database
from star import db
from star.config import Settings
from star.pipeline import apply_features, seed_synthetic
from star.store.evalset import EvalSetConfig, build_evalset
from star.store.trainset import TrainsetConfig, build_trainset
from star.text import market_eval as me
from star.text.config import STAR_PROMPTS, TextModelConfig, TrainConfig
from star.text.evaluate import compare
from star.text.model import TextEncoder, load_model

RESULTS = Path(__file__).parent / "results"
BEFORE = 254  # 256 tokens with [CLS] and [SEP]: STAR's budget before whole texts


def encoders() -> dict[str, TextModelConfig]:
    cut = dict.fromkeys(("job", "member", "resume"), BEFORE)
    return {"base: 256 tokens + prompts (before #15)": TextModelConfig(max_length=cut, prompts=dict(STAR_PROMPTS)),
            "base: 256 tokens, no prompt": TextModelConfig(max_length=cut),
            "base: whole text + prompts": TextModelConfig(prompts=dict(STAR_PROMPTS)),
            "base: whole text, 512-token windows": TextModelConfig(window=512),
            "base: whole text, no prompt (default)": TextModelConfig()}


def shuffle_texts(target, seed: int) -> None:
    """The noisy control: every snapshot's text becomes that of a random other snapshot of the same entity kind."""
    with db.connect(target) as conn:
        for entity in ("member", "job"):
            rows = conn.execute("SELECT entity_id, valid_from, text FROM star.text_snapshots WHERE entity = %s "
                                "ORDER BY 1, 2", (entity,)).fetchall()
            perm = np.random.default_rng(seed).permutation(len(rows))
            conn.execute("CREATE TEMP TABLE shuffled (entity_id bigint, valid_from timestamptz, text text)")
            with conn.cursor().copy("COPY shuffled FROM STDIN") as copy:
                for (eid, vf, _), j in zip(rows, perm):
                    copy.write_row((eid, vf, rows[j][2]))
            conn.execute("UPDATE star.text_snapshots t SET text = s.text FROM shuffled s WHERE t.entity = %s "
                         "AND t.entity_id = s.entity_id AND t.valid_from = s.valid_from", (entity,))
            conn.execute("DROP TABLE shuffled")
        conn.commit()


def score_frozen(evalsets: dict, report: dict) -> None:
    for name, evalset in evalsets.items():
        pairs = evalset.pairs
        m, j = pairs["member_text"].tolist(), pairs["job_text"].tolist()
        scores = {me.TFIDF: me.tfidf_cosine(m, j)}
        for label, cfg in encoders().items():
            started = time.time()
            scores[label] = me.encoder_cosine(TextEncoder(cfg), m, j, progress=False)
            emit({"part": "A", "negatives": name, "scorer": label, "seconds": round(time.time() - started, 1)})
        report["A"][name] = me.auc_rows(pairs, scores)
        emit({"part": "A", "negatives": name, "rows": report["A"][name]})


def knn_category(target, report: dict, *, n: int, column: str = "occupation_group", k: int = 5) -> None:
    """A2: kNN@k accuracy of `column` among members' current profiles (leave one out), per scorer: the synthetic
    analogue of the resume check (category from the nearest profiles)."""
    from sklearn.feature_extraction.text import TfidfVectorizer

    with db.connect(target) as conn:
        rows = conn.execute(
            "SELECT DISTINCT ON (t.entity_id) t.text, h.attrs ->> %s FROM star.text_snapshots t "
            "JOIN LATERAL (SELECT attrs FROM star.member_history h WHERE h.member_id = t.entity_id "
            "ORDER BY valid_from DESC LIMIT 1) h ON true WHERE t.entity = 'member' AND h.attrs ->> %s IS NOT NULL "
            "ORDER BY t.entity_id, t.valid_from DESC LIMIT %s", (column, column, n)).fetchall()
    texts, labels = [r[0] for r in rows], np.array([r[1] for r in rows])
    vectors = {me.TFIDF: TfidfVectorizer(sublinear_tf=True).fit_transform(texts).toarray()}
    for label, cfg in encoders().items():
        vectors[label] = TextEncoder(cfg).encode(texts, "member").embeddings
    out = []
    for label, x in vectors.items():
        x = x / np.maximum(np.linalg.norm(x, axis=1, keepdims=True), 1e-12)
        sim = x @ x.T
        np.fill_diagonal(sim, -np.inf)
        top = np.argsort(-sim, axis=1)[:, :k]
        votes = [max(set(row), key=list(row).count) for row in labels[top]]
        out.append({"scorer": label, "accuracy": float(np.mean(np.array(votes) == labels))})
    report["A2"] = {"column": column, "k": k, "members": len(texts), "rows": out}
    emit({"part": "A2", **report["A2"]})


def fine_tune(target, evalsets: dict, args, report: dict, workdir: Path) -> None:
    start = next(iter(evalsets.values())).start
    model_cfg = TextModelConfig()
    train_cfg = TrainConfig(max_steps=args.steps, max_tokens=args.train_tokens, seed=args.seed, lr=args.lr,
                            grad_accum=1, gradient_checkpointing=False, epochs=args.epochs)
    for label, hard in (("random + explicit negatives", None), (f"+ hard negatives by {args.hard_by}", args.hard_by)):
        pairs = build_trainset(target, TrainsetConfig(task="apply", end=start, hard_negatives_by=hard))
        started = time.time()
        result = compare(pairs, model_cfg=model_cfg, train_cfg=train_cfg, out_dir=workdir / label.replace(" ", "_"),
                         modes=("frozen_head", "bce+contrastive"), progress=True)
        rows = {r["model"]: r for r in result["rows"]}
        later = {}
        encoder, _, _ = load_model(rows["bce+contrastive"]["checkpoint"])
        for name, evalset in evalsets.items():
            p = evalset.pairs
            later[name] = me.auc_rows(p, {"fine-tuned": me.encoder_cosine(encoder, p["member_text"].tolist(),
                                                                          p["job_text"].tolist(), progress=False)})
        entry = {"negatives": label, "train_pairs": len(pairs), "val_rows": result["val_rows"],
                 "frozen_val_auc": rows["frozen_head"]["val_auc"], "tuned_val_auc": rows["bce+contrastive"]["val_auc"],
                 "relative": rows["bce+contrastive"]["relative_to_frozen"],
                 "frozen_cosine_auc": rows["frozen_head"]["val_auc_cosine"],
                 "tuned_cosine_auc": rows["bce+contrastive"]["val_auc_cosine"],
                 "steps": rows["bce+contrastive"]["steps"],
                 "seconds_per_step": rows["bce+contrastive"]["seconds_per_step"], "later_window": later,
                 "seconds": round(time.time() - started, 1)}
        report["B"].append(entry)
        emit({"part": "B", **entry})


def markdown(report: dict) -> str:
    lines = [f"# Text quality ({report['market']})", ""]
    for part in sorted(report["commands"]):
        lines.append(f"- part {part}: `{report['commands'][part]}`")
    lines.append("")
    for name, rows in report["A"].items():
        lines += [f"## A. Frozen MiniLM on the later window, negatives: {name}", "",
                  "| scorer | AUC | vs TF-IDF | cold-start AUC | pairs (+/-) |", "|---|---|---|---|---|"]
        tfidf = rows[0]["auc"]
        for r in rows:
            rel = f"{(r['auc'] / tfidf - 1) * 100:+.1f} %" if r["auc"] and tfidf else "n/a"
            cold = f"{r['cold_auc']:.4f}" if r.get("cold_auc") is not None else "n/a"
            lines.append(f"| {r['scorer']} | {r['auc']:.4f} | {rel} | {cold} | {r['positives']}/{r['negatives']} |")
        lines.append("")
    if report.get("A2"):
        a2 = report["A2"]
        lines += [f"## A2. kNN@{a2['k']} {a2['column']} accuracy, {a2['members']} members' current profiles", "",
                  "| scorer | accuracy |", "|---|---|"] + [f"| {r['scorer']} | {r['accuracy']:.4f} |"
                                                         for r in a2["rows"]] + [""]
    if report["B"]:
        lines += ["## B. Table-2 analogue: fine-tune vs frozen (validation window before A's window)", "",
                  "| training negatives | frozen + head | LoRA bce+contrastive | relative | cosine frozen / tuned "
                  "| later window, tuned cosine (random / by location) | s/step |", "|---|---|---|---|---|---|---|"]
        for b in report["B"]:
            later = " / ".join(f"{rows[0]['auc']:.4f}" for rows in b["later_window"].values())
            lines.append(f"| {b['negatives']} ({b['train_pairs']} pairs) | {b['frozen_val_auc']:.4f} | "
                         f"{b['tuned_val_auc']:.4f} | {b['relative'] * 100:+.2f} % | {b['frozen_cosine_auc']:.4f} / "
                         f"{b['tuned_cosine_auc']:.4f} | {later} | {b['seconds_per_step']:.1f} |")
    return "\n".join(lines) + "\n"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--members", type=int, default=2000)
    ap.add_argument("--jobs", type=int, default=400)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--text-length", default="long", choices=("long", "short"))
    ap.add_argument("--noisy", action="store_true", help="shuffle texts between entities (no text signal)")
    ap.add_argument("--parts", default="A,B", help="A (frozen variants, kNN) and/or B (fine-tunes)")
    ap.add_argument("--steps", type=int, default=60)
    ap.add_argument("--lr", type=float, default=1e-3, help="LoRA learning rate")
    ap.add_argument("--epochs", type=int, default=20, help="passes over the pairs at most (training stops at --steps)")
    ap.add_argument("--train-tokens", type=int, default=128)
    ap.add_argument("--hard-by", default="occupation_group")
    ap.add_argument("--knn-members", type=int, default=600, help="profiles in the kNN category check (A2)")
    args = ap.parse_args()
    parts = set(args.parts.split(","))
    if not parts <= {"A", "B"}:
        ap.error(f"--parts {args.parts}: choose from A, B (comma-separated)")
    settings = Settings.from_env()
    target = fresh_database("star_bench_text_quality", settings)
    seed_synthetic(target, members=args.members, jobs=args.jobs, seed=args.seed, text_length=args.text_length,
                   progress=False)
    if args.noisy:
        shuffle_texts(target, args.seed)
    apply_features(target, settings)
    evalsets = {"5 random": build_evalset(target, EvalSetConfig(seed=args.seed)),
                "5 sharing location": build_evalset(target, EvalSetConfig(seed=args.seed, negatives_by="location"))}
    market = (f"synthetic {args.text_length} texts{', shuffled (noisy)' if args.noisy else ''}: {args.members} "
              f"members, {args.jobs} jobs, seed {args.seed}")
    command = "python bench/text_quality.py " + " ".join(
        f"--{k.replace('_', '-')} {v}" if not isinstance(v, bool) else f"--{k.replace('_', '-')}"
        for k, v in vars(args).items() if v not in (False, None))
    stem = RESULTS / ("text_quality" + ("_short" if args.text_length == "short" else "") + ("_noisy" if args.noisy
                                                                                              else ""))
    earlier = json.loads(stem.with_suffix(".json").read_text()) if stem.with_suffix(".json").exists() else {}
    commands = {**earlier.get("commands", {}), **dict.fromkeys(parts, command)}
    report = {"market": market, "commands": commands, "A": earlier.get("A", {}), "A2": earlier.get("A2"),
              "B": [] if "B" in parts else earlier.get("B", []),
              "window_start": str(next(iter(evalsets.values())).start)}
    if "A" in parts:
        report["A"] = {}
        score_frozen(evalsets, report)
        knn_category(target, report, n=args.knn_members)
    if "B" in parts:
        with tempfile.TemporaryDirectory() as tmp:
            fine_tune(target, evalsets, args, report, Path(tmp))
    RESULTS.mkdir(exist_ok=True)
    stem.with_suffix(".json").write_text(json.dumps(report, indent=2, default=str))
    stem.with_suffix(".md").write_text(markdown(report))
    print(markdown(report))
    db.drop_database(target)


if __name__ == "__main__":
    main()
