"""`star seed --from DIR`: bad files are refused with a clear message and nothing is written; loading twice is a no-op."""

from __future__ import annotations

import pytest

from star import db
from star.data.format import read_dir, validate
from star.errors import IngestError
from star.store.marketplace import load
from tests import tiny_market

COUNTED = ["members", "jobs", "member_history", "job_history", "text_snapshots", "attribute_nodes",
           "attribute_edges", "interactions", "id_features", "embedding_versions"]


def snapshot(target) -> dict:
    """Every row of every table, with its created time: 'unchanged' means exactly this."""
    with db.connect(target) as conn:
        return {t: sorted(map(repr, conn.execute(f"SELECT * FROM star.{t}").fetchall())) for t in COUNTED}


@pytest.mark.parametrize("fmt", ["csv", "parquet"])
def test_load_then_reload_changes_nothing(target, tmp_path, fmt):
    directory = tiny_market.write(tmp_path / "m", fmt=fmt)
    counts = load(target, read_dir(directory))
    assert counts["members"] == 2 and counts["interactions"] == 3 and counts["attribute_edges"] == 4
    before = snapshot(target)
    again = load(target, read_dir(directory))
    assert snapshot(target) == before
    assert all(v == 0 for k, v in again.items() if k != "new_feature_views") and again["new_feature_views"] == []


def test_csv_and_parquet_mean_the_same_empty_texts_missing_values_and_numbers(tmp_path):
    data = tiny_market.frames()
    data["texts"]["text"] = ["", "Senior data analyst", "Nurse", "Senior analyst wanted", "Junior nurse"]
    data["members"]["seniority"] = ["", "senior", None]
    got = {}
    for fmt, grade in (("csv", ["3", None, "7"]), ("parquet", [3, None, 7])):  # Parquet: an int column with a gap
        data["members"]["grade"] = grade                                      # is float64
        market = validate(read_dir(tiny_market.write(tmp_path / fmt, data, fmt=fmt)))
        got[fmt] = (market.texts["text"].tolist(), market.members["seniority"].tolist(),
                    market.members["grade"].tolist())
    assert got["csv"] == got["parquet"] == (
        ["", "Senior data analyst", "Nurse", "Senior analyst wanted", "Junior nurse"], [None, "senior", None],
        ["3", None, "7"])


def test_member_without_valid_from_is_valid_since_the_beginning(target, tmp_path):
    load(target, read_dir(tiny_market.write(tmp_path / "m")))
    with db.connect(target) as conn:
        (valid_from,) = conn.execute("SELECT valid_from FROM star.member_history WHERE member_id = 2").fetchone()
    assert valid_from.year == 1970


def _bad(tmp_path, kind, mutate):
    data = tiny_market.frames()
    data[kind] = mutate(data[kind].copy())
    return tiny_market.write(tmp_path / "bad", data)


CASES = {
    "missing column": ("texts", lambda df: df.drop(columns=["valid_from"]), "texts.csv",
                       ["column 'valid_from'", "required column is missing"]),
    "bad integer": ("members", lambda df: df.assign(member_id=["1", "x7", "2"]), "members.csv",
                    ["row 2 (line 3)", "column 'member_id'", "'x7' is not an integer"]),
    "bad timestamp": ("edges", lambda df: df.assign(event_timestamp=df["event_timestamp"].where(
        df.index != 4, "yesterday-ish")), "edges.csv",
        ["row 5 (line 6)", "column 'event_timestamp'", "'yesterday-ish' is not a timestamp", "ISO-8601"]),
    "unknown member in texts": ("texts", lambda df: df.assign(entity_id=[1, 1, 99, 10, 11]), "texts.csv",
                                ["row 3", "member 99 is unknown", "add member 99 to members.*"]),
    "unknown job in edges": ("edges", lambda df: df.assign(dst_id=df["dst_id"].where(df.index != 6, "77")),
                             "edges.csv", ["row 7", "column 'dst_id'", "job 77 is unknown"]),
    "duplicate key": ("members", lambda df: df.assign(valid_from=["2025-01-01T00:00:00Z"] * 2 + [""]),
                      "members.csv", ["duplicate member history key", "member_id=1", "also at members.csv row 2"]),
    "interaction without time": ("edges", lambda df: df.assign(event_timestamp=df["event_timestamp"].where(
        df.index != 5, "")), "edges.csv", ["row 6", "interaction edge has no event time"]),
    "bad feature column name": ("members", lambda df: df.rename(columns={"location": "Home Town"}), "members.csv",
                                ["column 'Home Town'", "not usable as a feature name"]),
    "bad entity kind": ("texts", lambda df: df.assign(entity=["member", "member", "member", "job", "company"]),
                        "texts.csv", ["row 5", "'company' is not one of member, job"]),
}


@pytest.mark.parametrize("case", sorted(CASES))
def test_bad_input_names_file_row_column_and_writes_nothing(target, tmp_path, case):
    good = tiny_market.write(tmp_path / "good")
    load(target, read_dir(good))  # the database already holds data: it must stay exactly as it was
    before = snapshot(target)
    kind, mutate, file, fragments = CASES[case]
    with pytest.raises(IngestError) as err:
        load(target, read_dir(_bad(tmp_path, kind, mutate)))
    message = str(err.value)
    assert message.startswith(file), message
    for fragment in fragments:
        assert fragment in message, message
    assert "Fix:" in message
    assert snapshot(target) == before


def test_failure_after_writing_rolls_everything_back(target, tmp_path, monkeypatch):
    """A crash after the rows went in (injected into the last step of the load) leaves no partial rows."""
    import star.store.catalog

    before = snapshot(target)

    def crash(conn):
        raise RuntimeError("injected crash")

    monkeypatch.setattr(star.store.catalog, "sync_versions", crash)
    with pytest.raises(RuntimeError, match="injected crash"):
        load(target, read_dir(tiny_market.write(tmp_path / "m")))
    assert snapshot(target) == before
    monkeypatch.undo()
    load(target, read_dir(tiny_market.write(tmp_path / "m")))  # and running it again is safe
    assert snapshot(target) != before


def test_missing_members_file(target, tmp_path):
    data = tiny_market.frames()
    del data["members"]
    with pytest.raises(IngestError, match=r"members\.\*: not found.*Fix: add members.csv"):
        load(target, read_dir(tiny_market.write(tmp_path / "m", data)))


def test_star_seed_cli_reports_bad_input_and_exits_2(target, tmp_path):
    """The command line shows the same message, on stderr, with exit code 2 (no traceback)."""
    import os
    import subprocess
    import sys
    from pathlib import Path

    data = tiny_market.frames()
    data["members"] = data["members"].assign(member_id=["1", "x7", "2"])
    directory = tiny_market.write(tmp_path / "bad", data)
    star = str(Path(sys.executable).with_name("star"))
    url = target.sqlalchemy_url()
    before = snapshot(target)
    done = subprocess.run([star, "seed", "--from", str(directory)], capture_output=True, text=True, timeout=300,
                          env={**os.environ, "STAR_DATABASE_URL": url})
    assert done.returncode == 2
    assert "star: error: members.csv, row 2 (line 3), column 'member_id': 'x7' is not an integer" in done.stderr
    assert "Traceback" not in done.stderr
    assert snapshot(target) == before
