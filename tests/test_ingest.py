"""`star seed --from DIR`: bad files are refused with a clear message and nothing is written; loading twice is a no-op."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from star import db
from star.data.format import validate
from star.data.reading import read_dir
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
    data[kind] = mutate(data[kind].copy() if kind in data else getattr(tiny_market, kind)())
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
    "missing id": ("members", lambda df: df.assign(member_id=["1", "", "2"]), "members.csv",
                   ["row 2 (line 3)", "column 'member_id'", "member id is missing", "give every row a member_id"]),
    "id beyond int64": ("members", lambda df: df.assign(member_id=["1", "99999999999999999999", "2"]), "members.csv",
                        ["row 2 (line 3)", "'99999999999999999999' does not fit a 64-bit member id", "bigint"]),
    "id beyond int64 by one": ("texts", lambda df: df.assign(entity_id=["1", "1", "9223372036854775808", "10", "11"]),
                               "texts.csv", ["row 3 (line 4)", "'9223372036854775808' does not fit a 64-bit"]),
    "id in scientific notation": ("members", lambda df: df.assign(member_id=["1", "1e0", "2"]), "members.csv",
                                  ["row 2 (line 3)", "'1e0' is not an integer member id", "in digits"]),
    "fractional job id in an edge": ("edges", lambda df: df.assign(dst_id=df["dst_id"].where(df.index != 6, "11.7")),
                                     "edges.csv", ["row 7 (line 8)", "column 'dst_id'", "'11.7' is not an integer"]),
    "one edge with job 010 and 10": ("edges", lambda df: pd.concat([df, df.iloc[[4]].assign(dst_id="010")]),
                                     "edges.csv", ["row 5 (line 6)", "duplicate edge", "dst_id=10,", "row 8"]),
    "NUL in a categorical": ("members", lambda df: df.assign(seniority=["junior", "sen\x00ior", "mid"]),
                             "members.csv", ["row 2 (line 3)", "column 'seniority'", "NUL byte", "remove the NUL"]),
    "NUL in a text": ("texts", lambda df: df.assign(text=df["text"].where(df.index != 2, "Nur\x00se")), "texts.csv",
                      ["row 3 (line 4)", "column 'text'", "NUL byte"]),
    "NUL in a node id": ("edges", lambda df: df.assign(dst_id=df["dst_id"].where(df.index != 1, "pyth\x00on")),
                         "edges.csv", ["row 2 (line 3)", "column 'dst_id'", "NUL byte"]),
    "NUL in a label": ("nodes", lambda df: df.assign(label=["SQL", "Py\x00thon"]), "nodes.csv",
                       ["row 2 (line 3)", "column 'label'", "NUL byte"]),
    "NUL in a relation": ("edges", lambda df: df.assign(relation=df["relation"].where(df.index != 0, "has\x00skill")),
                          "edges.csv", ["row 1 (line 2)", "column 'relation'", "NUL byte"]),
    "feature name too long": ("members", lambda df: df.rename(columns={"location": "l" * 39}), "members.csv",
                              [f"column '{'l' * 39}'", "is 39 characters long", "at most 38", "63 bytes"]),
    "reserved reverse prefix": ("edges", lambda df: df.assign(relation=df["relation"].where(df.index != 4,
                                                                                              "rev_view")),
                                "edges.csv", ["row 5 (line 6)", "'rev_view' starts with 'rev_'", "'reverse_view'"]),
    "relation name too long": ("edges", lambda df: df.assign(relation=df["relation"].where(df.index != 1, "r" * 40)),
                               "edges.csv", ["row 2 (line 3)", "column 'relation'", "is 40 characters long",
                                             "at most 39"]),
    "truth names an unknown member": ("truth", lambda df: df.assign(member_id=[1, 99]), "truth.csv",
                                      ["row 2 (line 3)", "column 'member_id'", "member 99 is unknown"]),
    "truth names an unknown job": ("truth", lambda df: df.assign(job_id=[77, 11]), "truth.csv",
                                   ["row 1 (line 2)", "column 'job_id'", "job 77 is unknown"]),
    "utility not a number": ("truth", lambda df: df.assign(utility=["0.8", "high"]), "truth.csv",
                             ["row 2 (line 3)", "column 'utility'", "'high' is not a number"]),
}


def _edit_csv(tmp_path, file, edit) -> Path:
    """The tiny market as CSV with one file's bytes edited (what pandas would not write: a short row, latin-1)."""
    directory = tiny_market.write(tmp_path / "bad")
    path = directory / file
    path.write_bytes(edit(path.read_bytes()))
    return directory


def _line(number, edit):
    """Edit one line of a file's bytes (1 = the header)."""
    def apply(data: bytes) -> bytes:
        lines = data.split(b"\n")
        lines[number - 1] = edit(lines[number - 1])
        return b"\n".join(lines)
    return apply


RAW_CASES = {  # members.csv: member_id,valid_from,seniority,location
    "short row": ("members.csv", _line(3, lambda b: b.rsplit(b",", 1)[0]),
                  ["row 2 (line 3)", "has 3 fields, the header has 4", "add the missing fields"]),
    "long row": ("members.csv", _line(3, lambda b: b + b",extra"),
                 ["row 2 (line 3)", "has 5 fields, the header has 4", "quote a value"]),
    "long first row": ("members.csv", _line(2, lambda b: b"7," + b),  # pandas took the first column as the index
                       ["row 1 (line 2)", "has 5 fields, the header has 4"]),
    "repeated column": ("members.csv", _line(1, lambda b: b.replace(b"location", b"seniority")),
                        ["column 'seniority'", "appears twice in the header (fields 3 and 4)", "rename or remove"]),
    "not UTF-8": ("texts.csv", lambda data: data.replace(b"Nurse", "Nursé".encode("latin-1")),
                  ["is not UTF-8 text (byte 0xe9 on line 4)", "save the file as UTF-8"]),
    "line after a text spanning two lines": (
        "texts.csv", lambda data: data.replace(b'"Junior data analyst, SQL"', b'"Junior data analyst,\nSQL"')
        .replace(b"member,2,", b"member,99,"), ["row 3 (line 5)", "member 99 is unknown"]),
    "NUL cut by the CSV reader": ("jobs.csv", lambda data: data.replace(b"junior", b"jun\x00ior"),
                                  ["row 2 (line 3)", "column 'seniority'", "NUL byte"]),
}


def _refused_and_nothing_written(target, tmp_path, make_bad, file, fragments) -> None:
    good = tiny_market.write(tmp_path / "good")
    load(target, read_dir(good))  # the database already holds data: it must stay exactly as it was
    before = snapshot(target)
    with pytest.raises(IngestError) as err:
        load(target, read_dir(make_bad()))
    message = str(err.value)
    assert message.startswith(file), message
    for fragment in fragments:
        assert fragment in message, message
    assert "Fix:" in message
    assert snapshot(target) == before


@pytest.mark.parametrize("case", sorted(CASES))
def test_bad_input_names_file_row_column_and_writes_nothing(target, tmp_path, case):
    kind, mutate, file, fragments = CASES[case]
    _refused_and_nothing_written(target, tmp_path, lambda: _bad(tmp_path, kind, mutate), file, fragments)


@pytest.mark.parametrize("case", sorted(RAW_CASES))
def test_malformed_csv_names_the_line_and_writes_nothing(target, tmp_path, case):
    file, edit, fragments = RAW_CASES[case]
    _refused_and_nothing_written(target, tmp_path, lambda: _edit_csv(tmp_path, file, edit), file, fragments)


def test_ids_are_parsed_exactly(tmp_path):
    """No float round trip: 2**53 + 1 stays itself next to a '2.0' (which pandas would make a float column)."""
    data = tiny_market.frames()
    data["members"] = data["members"].assign(member_id=["1", "9007199254740993", "2.0"])
    data["edges"] = data["edges"].assign(dst_id=data["edges"]["dst_id"].where(data["edges"].index != 6, "011"))
    market = validate(read_dir(tiny_market.write(tmp_path / "m", data)))
    assert market.members["member_id"].tolist() == [1, 9007199254740993, 2]
    assert market.interactions["job_id"].tolist() == [10, 10, 11]
    assert sorted(market.attribute_edges["node_id"]) == ["analyst", "python", "sql", "sql"]


def test_parquet_values_are_checked_like_csv(tmp_path):
    """Parquet keeps what the CSV reader cuts (a NUL byte) and stores ids as numbers: the same rules apply."""
    data = tiny_market.frames()
    data["nodes"] = tiny_market.nodes().assign(label=["SQL", "Py\x00thon"])
    with pytest.raises(IngestError, match=r"^nodes\.parquet, row 2, column 'label': .*NUL byte"):
        validate(read_dir(tiny_market.write(tmp_path / "nul", data, fmt="parquet")))
    data = tiny_market.frames()
    data["members"] = data["members"].assign(member_id=[1.0, 2.5, 2.0])
    with pytest.raises(IngestError, match=r"^members\.parquet, row 2, column 'member_id': 2\.5 is not an exact"):
        validate(read_dir(tiny_market.write(tmp_path / "float", data, fmt="parquet")))
    data["members"] = data["members"].assign(member_id=np.array([1, 2 ** 64 - 1, 2], dtype=np.uint64))
    with pytest.raises(IngestError, match=r"row 2, column 'member_id': 18446744073709551615 does not fit"):
        validate(read_dir(tiny_market.write(tmp_path / "uint", data, fmt="parquet")))
    data["members"] = data["members"].assign(member_id=[1.0, 1.0, 2.0])
    assert validate(read_dir(tiny_market.write(tmp_path / "ok", data, fmt="parquet"))).members["member_id"].tolist() \
        == [1, 1, 2]


def test_feature_name_limit_fits_postgres_identifiers():
    from star.data.format import MAX_FEATURE_NAME

    assert len(f"member_categorical_v999__{'x' * MAX_FEATURE_NAME}".encode()) == 63


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


# Every required value, blanked: (kind, column, row index). Only spaces is as empty as nothing, in CSV and Parquet.
REQUIRED = [("members", "member_id", 1), ("jobs", "job_id", 0), ("texts", "entity", 2), ("texts", "entity_id", 2),
            ("texts", "valid_from", 2), ("edges", "src_type", 4), ("edges", "src_id", 4), ("edges", "relation", 4),
            ("edges", "dst_type", 4), ("edges", "dst_id", 4), ("edges", "event_timestamp", 4),
            ("nodes", "node_type", 1), ("nodes", "node_id", 1), ("truth", "member_id", 1), ("truth", "job_id", 1),
            ("truth", "event_timestamp", 1), ("truth", "utility", 1), ("truth", "outcome", 1)]


@pytest.mark.parametrize("fmt,blank,dtype", [("csv", "   ", str), ("parquet", "", str), ("parquet", " \t ", str),
                                             ("parquet", " ", "string")])  # pandas' own string dtype too
@pytest.mark.parametrize("kind,column,i", REQUIRED, ids=[f"{k}.{c}" for k, c, _ in REQUIRED])
def test_a_blank_required_value_is_missing(tmp_path, fmt, blank, dtype, kind, column, i):
    """A blank interaction time used to be stored as 1970-01-01; no required value may be only whitespace."""
    data = {**tiny_market.frames(), "nodes": tiny_market.nodes(), "truth": tiny_market.truth()}
    df = data[kind].astype(dtype)
    df.loc[i, column] = blank
    data[kind] = df
    with pytest.raises(IngestError) as err:
        validate(read_dir(tiny_market.write(tmp_path / "m", data, fmt=fmt)))
    assert str(err.value).startswith(f"{kind}.{fmt}, row {i + 1}") and f"column '{column}'" in str(err.value)
    assert "missing" in str(err.value) or "has no event time" in str(err.value), str(err.value)


def test_a_blank_label_keeps_the_stored_one(target, tmp_path):
    data = {**tiny_market.frames(), "nodes": tiny_market.nodes()}
    load(target, read_dir(tiny_market.write(tmp_path / "a", data)))
    data["nodes"] = data["nodes"].assign(label=["  ", "Python"])
    load(target, read_dir(tiny_market.write(tmp_path / "b", data)))
    with db.connect(target) as conn:
        assert conn.execute("SELECT label FROM star.attribute_nodes WHERE node_id = 'sql'").fetchone() == ("SQL",)


NOW = pd.Timestamp("2026-01-01T12:00:00Z")
FUTURE = [("members", "valid_from", 1), ("jobs", "valid_from", 1), ("texts", "valid_from", 3),
          ("edges", "event_timestamp", 5), ("edges", "event_timestamp", 1), ("truth", "event_timestamp", 0)]


@pytest.mark.parametrize("fmt", ["csv", "parquet"])
@pytest.mark.parametrize("kind,column,i", FUTURE, ids=[f"{k}.{c}.{i}" for k, c, i in FUTURE])
def test_a_time_in_the_future_is_refused(tmp_path, fmt, kind, column, i):
    """One member valid from 2200 moved the data's end to 2200 (and graph train evaluated on nothing)."""
    data = {**tiny_market.frames(), "truth": tiny_market.truth()}
    df = data[kind].astype(str)
    df.loc[i, column] = "2200-01-01T00:00:00Z"
    data[kind] = df
    with pytest.raises(IngestError) as err:
        validate(read_dir(tiny_market.write(tmp_path / "m", data, fmt=fmt)), now=NOW)
    message = str(err.value)
    line = f" (line {i + 2})" if fmt == "csv" else ""
    assert message.startswith(f"{kind}.{fmt}, row {i + 1}{line}, column '{column}': 2200-01-01T00:00:00+00:00 is in "
                              "the future (after 2026-01-02T12:00Z"), message
    assert "Fix: correct the time" in message


def test_the_future_tolerance_is_one_day(tmp_path):
    data = tiny_market.frames()
    data["members"] = data["members"].assign(valid_from=["2025-01-01", "2026-01-02T11:59:00Z", ""])
    validate(read_dir(tiny_market.write(tmp_path / "ok", data)), now=NOW)  # within a day: clock skew
    data["members"] = data["members"].assign(valid_from=["2025-01-01", "2026-01-02T12:01:00Z", ""])
    with pytest.raises(IngestError, match=r"row 2 \(line 3\), column 'valid_from': 2026-01-02T12:01:00\+00:00 is in"):
        validate(read_dir(tiny_market.write(tmp_path / "late", data)), now=NOW)


@pytest.mark.parametrize("when", ["3000-01-01", "1500-06-01"])
def test_parquet_times_beyond_pandas_range_are_one_clear_error(tmp_path, when):
    """A native Parquet timestamp in year 3000 raised pandas' OutOfBoundsDatetime (a traceback)."""
    import datetime as dt

    import pyarrow as pa
    import pyarrow.parquet as pq

    directory = tiny_market.write(tmp_path / "m")
    (directory / "edges.csv").unlink()
    edges = tiny_market.frames()["edges"]
    times = [dt.datetime.fromisoformat(when) if i == 4 else (dt.datetime.fromisoformat(t[:19]) if t else None)
             for i, t in enumerate(edges["event_timestamp"])]
    table = pa.Table.from_pandas(edges.drop(columns="event_timestamp"), preserve_index=False)
    pq.write_table(table.append_column("event_timestamp", pa.array(times, pa.timestamp("us"))),
                   directory / "edges.parquet")
    with pytest.raises(IngestError) as err:
        validate(read_dir(directory), now=NOW)
    expected = "in the future" if when > "2026" else "is before 1678-01-01"
    assert str(err.value).startswith(f"edges.parquet, row 5, column 'event_timestamp': {when}T00:00:00+00:00 ")
    assert expected in str(err.value)
    edges = edges.assign(event_timestamp=edges["event_timestamp"].where(edges.index != 4, when))  # the same as text
    with pytest.raises(IngestError, match=f"row 5 \\(line 6\\), column 'event_timestamp': {when}T00:00:00\\+00:00 "
                                          f"{'is in the future' if when > '2026' else 'is before 1678'}"):
        validate(read_dir(tiny_market.write(tmp_path / "csv", {**tiny_market.frames(), "edges": edges})), now=NOW)


def _history(target, entity: str = "member") -> dict:
    key = f"{entity}_id"
    with db.connect(target) as conn:
        return {(i, t.date().isoformat()): attrs for i, t, attrs in conn.execute(
            f"SELECT {key}, valid_from, attrs FROM star.{entity}_history ORDER BY 1, 2")}


def test_a_column_absent_from_a_reload_keeps_its_values(target, tmp_path):
    """Reloading members with only seniority dropped every member's location: loads merge per column."""
    load(target, read_dir(tiny_market.write(tmp_path / "a")))
    before = _history(target)
    data = tiny_market.frames()
    data["members"] = pd.DataFrame({"member_id": [1, 1], "valid_from": ["2025-03-01T00:00:00Z", "2025-05-01"],
                                    "seniority": ["lead", "principal"]})
    counts = load(target, read_dir(tiny_market.write(tmp_path / "b", data)))
    after = _history(target)
    assert after[(1, "2025-03-01")] == {"seniority": "lead", "location": "berlin"}  # same key: location kept
    assert after[(1, "2025-05-01")] == {"seniority": "principal", "location": "berlin"}  # later: carried forward
    assert after[(1, "2025-01-01")] == before[(1, "2025-01-01")]
    assert after[(2, "1970-01-01")] == before[(2, "1970-01-01")]
    assert counts["member_history"] == 2 and counts["new_feature_views"] == []
    again = load(target, read_dir(tiny_market.write(tmp_path / "b", data)))  # and again: nothing changes
    assert again["member_history"] == 0 and _history(target) == after


def test_an_empty_cell_means_no_value_from_that_time_on(target, tmp_path):
    load(target, read_dir(tiny_market.write(tmp_path / "a")))
    data = tiny_market.frames()
    data["members"] = pd.DataFrame({"member_id": [1, 2], "valid_from": ["2025-03-01T00:00:00Z", ""],
                                    "seniority": ["senior", "mid"], "location": ["", "  "]})
    load(target, read_dir(tiny_market.write(tmp_path / "b", data)))
    data["members"] = pd.DataFrame({"member_id": [1], "valid_from": ["2025-06-01"], "seniority": ["lead"]})
    load(target, read_dir(tiny_market.write(tmp_path / "c", data)))
    after = _history(target)
    assert after[(1, "2025-01-01")] == {"seniority": "junior", "location": "berlin"}  # earlier rows untouched
    assert after[(1, "2025-03-01")] == {"seniority": "senior", "location": None}
    assert after[(2, "1970-01-01")] == {"seniority": "mid", "location": None}
    assert after[(1, "2025-06-01")] == {"seniority": "lead", "location": None}  # the removal is carried too


def test_jobs_merge_per_column_too_and_parts_of_one_load_may_differ(target, tmp_path):
    data = tiny_market.frames()
    data["jobs"] = data["jobs"].assign(remote=["yes", "no"])
    load(target, read_dir(tiny_market.write(tmp_path / "a", data)))
    data["jobs"] = pd.DataFrame({"job_id": [10], "valid_from": ["2025-01-05T00:00:00Z"], "seniority": ["mid"]})
    directory = tiny_market.write(tmp_path / "b", data)
    # two parts of members.*: one with location, one without; the one without must not erase it
    pd.DataFrame({"member_id": [1], "valid_from": ["2025-04-01"], "seniority": ["staff"]}).to_csv(
        directory / "members-extra.csv", index=False)
    load(target, read_dir(directory))
    jobs, members = _history(target, "job"), _history(target)
    assert jobs[(10, "2025-01-05")] == {"seniority": "mid", "remote": "yes"}
    assert jobs[(11, "2025-02-01")] == {"seniority": "junior", "remote": "no"}
    assert members[(1, "2025-04-01")] == {"seniority": "staff", "location": "berlin"}
