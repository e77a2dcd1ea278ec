"""The command line on bad options: one line on stderr naming the option, the value and the fix, exit code 2, no
traceback, nothing written. (Values outside an option's fixed choices are refused by the parser:
tests/test_cli_options.py.)"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from star.data.reading import read_dir
from star.store.marketplace import load
from tests import tiny_market
from tests.test_ingest import snapshot

CASES = {
    "unparsable cutoff": (["graph", "train", "--cutoff", "garbage"], "--cutoff 'garbage' is not a time"),
    "unparsable embed cutoff": (["graph", "embed", "--cutoff", "soon"], "--cutoff 'soon' is not a time"),
    "unparsable materialize start": (["features", "materialize", "garbage"], "START 'garbage' is not a time"),
    "materialize backwards": (["features", "materialize", "2025-06-01", "2025-01-01"],
                              "START 2025-06-01T00:00:00+00:00 is after END 2025-01-01T00:00:00+00:00; swap them"),
    "unparsable trainset start": (["trainset", "--out", "x.parquet", "--start", "garbage"],
                                  "--start 'garbage' is not a time"),
    "negative batch size": (["text", "embed", "--base", "--batch-size", "-3"],
                            "batch_size=-3 must be >= 1; pass --batch-size with a value >= 1"),
    "online before feast apply": (["online", "member", "1"], "registered but not applied in Feast"),
    "no synthetic members": (["seed", "--synthetic", "--members", "0"], "members=0 must be >= 1"),
    "zero graph width": (["graph", "train", "--out-dim", "0"], "out_dim=0 must be >= 1; pass --out-dim"),
    "negative graph learning rate": (["graph", "train", "--lr", "-1"], "lr=-1.0 must be > 0; pass --lr"),
    "negative text learning rate": (["text", "train", "--lr", "-1"], "lr=-1.0 must be > 0; pass --lr"),
    "negative triplet weight": (["text", "train", "--lambda-c", "-5"], "lambda_c=-5.0 must be >= 0"),
    "positive task as negative": (["trainset", "--out", "x.parquet", "--negatives", "dismiss,apply"],
                                  "includes the task 'apply': a relation cannot be both label 1 and label 0"),
    "unknown family": (["versions", "list", "nosuchfamily"], "no embedding family 'nosuchfamily'; the registry has"),
    "map onto itself": (["compat", "fit", "member_text_embedding", "--from", "2", "--to", "2"],
                        "--from 2 and --to 2 are the same vintage"),
    "map from the older vintage": (["compat", "fit", "member_text_embedding", "--from", "1", "--to", "2"],
                                   "--from 1 is older than --to 2; --from is the newer vintage (its vectors go in), "
                                   "--to the older one (its space comes out): swap them, --from 2 --to 1"),
    "map without held-out rows": (["compat", "fit", "member_text_embedding", "--from", "2", "--to", "1",
                                   "--holdout", "0"], "holdout=0 leaves no held-out rows, so the fit metrics would "
                                                      "be in-sample"),
    "no text training steps": (["text", "train", "--max-steps", "0"], "max_steps=0 must be >= 1; pass --max-steps"),
    "no text epochs": (["text", "train", "--epochs", "0"], "epochs=0 must be >= 1; pass --epochs"),
    "text batch of one": (["text", "train", "--batch", "1"], "per_device_batch=1 must be >= 2 (the triplet loss "
                                                             "mines in-batch); pass --batch"),
    "no graph epochs": (["graph", "train", "--epochs", "0"], "epochs=0 must be >= 1; pass --epochs"),
    "no graph steps per epoch": (["graph", "train", "--steps-per-epoch", "0"],
                                 "steps_per_epoch=0: must be >= 1; pass --steps-per-epoch"),
    "no evaluation window": (["graph", "train", "--eval-days", "0"], "days=0.0: must be > 0; pass --eval-days"),
    "graph evaluated after the data": (["graph", "train", "--cutoff", "2026-01-01"],
                                       "has 0 pairs to evaluate on: 0 apply/dismiss interaction(s) in it"),
    "trainset window without labels": (["trainset", "--out", "x.parquet", "--start", "2025-06-01"],
                                       "0 'apply' interactions (label 1) in the window [--start 2025-06-01"),
    "synthetic market too large": (["seed", "--synthetic", "--members", "100000000"],
                                   "--members 100000000 --jobs 400 --months 6 needs about"),
    "synthetic months in the future": (["seed", "--synthetic", "--months", "1200"],
                                       "--months 1200 from 2025-01-01 ends 2125-01-01, in the future"),
}


@pytest.mark.parametrize("case", sorted(CASES))
def test_bad_options_get_one_line_and_exit_2(target, tmp_path, case):
    args, message = CASES[case]
    load(target, read_dir(tiny_market.write(tmp_path / "m")))
    before = snapshot(target)
    star = str(Path(sys.executable).with_name("star"))
    done = subprocess.run([star, *args], capture_output=True, text=True, timeout=300, cwd=tmp_path,
                          env={**os.environ, "STAR_DATABASE_URL": target.sqlalchemy_url()})
    assert done.returncode == 2, done.stderr[-2000:]
    assert "star: error: " in done.stderr and message in done.stderr
    assert "Traceback" not in done.stderr
    assert snapshot(target) == before


def test_an_unreachable_server_is_one_line_naming_it():
    star = str(Path(sys.executable).with_name("star"))
    done = subprocess.run([star, "db", "up"], capture_output=True, text=True, timeout=120,
                          env={**os.environ, "STAR_DATABASE_URL": "postgresql://u:p@127.0.0.1:1/star"})
    assert done.returncode == 2 and "Traceback" not in done.stderr
    assert "star: error: cannot connect to database 'star' on 127.0.0.1:1" in done.stderr


def test_a_parquet_time_in_year_3000_is_one_line(target, tmp_path):
    """pandas' OutOfBoundsDatetime was a traceback."""
    import datetime as dt

    import pyarrow as pa
    import pyarrow.parquet as pq

    directory = tiny_market.write(tmp_path / "m")
    members = tiny_market.frames()["members"].drop(columns="valid_from")
    table = pa.Table.from_pandas(members, preserve_index=False).append_column(
        "valid_from", pa.array([dt.datetime(2025, 1, 1), dt.datetime(3000, 1, 1), None], pa.timestamp("us")))
    (directory / "members.csv").unlink()
    pq.write_table(table, directory / "members.parquet")
    star = str(Path(sys.executable).with_name("star"))
    done = subprocess.run([star, "seed", "--from", str(directory)], capture_output=True, text=True, timeout=300,
                          env={**os.environ, "STAR_DATABASE_URL": target.sqlalchemy_url()})
    assert done.returncode == 2 and "Traceback" not in done.stderr, done.stderr[-2000:]
    assert ("star: error: members.parquet, row 2, column 'valid_from': 3000-01-01T00:00:00+00:00 is in the future"
            in done.stderr)


def test_seed_text_length_reaches_the_loaded_texts_and_the_job_line(target):
    """`star seed --synthetic --text-length short` loads the short texts and says so in its JSON line."""
    from star import db

    star = str(Path(sys.executable).with_name("star"))
    done = subprocess.run([star, "seed", "--synthetic", "--members", "30", "--jobs", "10", "--text-length", "short"],
                          capture_output=True, text=True, timeout=300,
                          env={**os.environ, "STAR_DATABASE_URL": target.sqlalchemy_url()})
    assert done.returncode == 0, done.stderr[-2000:]
    line = json.loads(done.stdout.splitlines()[-1])
    assert line["source"] == "synthetic:members=30,jobs=10,seed=0,months=6,text_length=short"
    with db.connect(target) as conn:
        longest = conn.execute("SELECT max(array_length(regexp_split_to_array(text, '\\s+'), 1)) "
                               "FROM star.text_snapshots").fetchone()[0]
    assert 40 <= longest <= 250  # long texts (the default) run past 1,000 words
