"""The command line on bad options: one line on stderr naming the option, the value and the fix, exit code 2, no
traceback, nothing written."""

from __future__ import annotations

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
    "unknown embed entity": (["text", "embed", "--base", "--entity", "foo"], "entities=('foo',): choose from"),
    "unknown online entity": (["online", "foo", "1"], "entity 'foo': choose from member, job"),
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
