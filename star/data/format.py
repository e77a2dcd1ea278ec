"""The marketplace input format (docs/data-format.md): validating what star.data.reading read from a directory.

    DIR/members.*  DIR/jobs.*  DIR/texts.*  DIR/edges.*  [DIR/nodes.*]  [DIR/truth.*]     (.csv, .csv.gz, .parquet)
        -> read_dir() -> validate() -> Marketplace (clean, typed frames) -> star.store.marketplace.write()

Every problem raises IngestError naming the file, row, column and fix; nothing is written before validation passes.
Rows are numbered from 1 for the first data row (in a CSV file that is line 2).
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from star.common import ENTITIES, ID_COLUMN
from star.data.reading import Frame
from star.errors import IngestError

IDENTIFIER = re.compile(r"^[a-z][a-z0-9_]*$")
# Column names the feature views use themselves; a categorical column may not take them.
RESERVED = {"member_id", "job_id", "valid_from", "event_timestamp", "created", "entity", "entity_id"}
EPOCH = pd.Timestamp("1970-01-01", tz="UTC")  # "valid since the beginning"
# A time may lie this far after the loader's clock (clock skew between the machine that wrote the file and this
# one); anything later is a typo or a placeholder (2200-01-01) that would move the data's end and with it every
# default cutoff and evaluation window.
FUTURE_TOLERANCE = pd.Timedelta(days=1)
EARLIEST = pd.Timestamp("1678-01-01", tz="UTC")  # pandas' nanosecond times start in 1677
INT64 = (-2 ** 63, 2 ** 63 - 1)  # ids are PostgreSQL bigint
WHOLE = re.compile(r"^[+-]?[0-9]+(?:\.0*)?$")  # 8001 or 8001.0, not 1e4 or 8001.7
# A categorical column's training-set column `member_categorical_v<k>__<name>` must fit PostgreSQL's 63-byte
# identifiers up to version 999 (longer names are cut, and Feast and the training set then miss the column).
MAX_FEATURE_NAME = 63 - len("member_categorical_v999__")
# likewise a relation's id features `member_ids_v<k>__<relation>_latest` (and `_ids`)
MAX_RELATION_NAME = 63 - len("member_ids_v999__") - len("_latest")


@dataclass(frozen=True, kw_only=True)
class Marketplace:
    """Validated marketplace frames, ready to write. Timestamps are UTC."""

    members: pd.DataFrame = field(metadata={"help": "member_id, valid_from, categorical columns (str or None)"})
    jobs: pd.DataFrame = field(metadata={"help": "job_id, valid_from, categorical columns"})
    texts: pd.DataFrame = field(metadata={"help": "entity, entity_id, valid_from, text"})
    attribute_edges: pd.DataFrame = field(
        metadata={"help": "entity, entity_id, relation, node_type, node_id, event_timestamp"})
    interactions: pd.DataFrame = field(metadata={"help": "member_id, job_id, relation, event_timestamp"})
    nodes: pd.DataFrame = field(metadata={"help": "node_type, node_id, label"})
    truth: pd.DataFrame | None = None
    absent: dict[str, pd.DataFrame] = field(default_factory=dict, metadata={
        "help": "entity -> bool frame (rows x categorical columns of members / jobs): True where the row's file has "
                "no such column, so the load keeps the stored value (an empty cell is None in the frame: no value)"})


def _fail(fr: Frame, i: int | None, column: str | None, problem: str, fix: str) -> IngestError:
    if i is None:
        return IngestError(file=", ".join(fr.files), column=column, problem=problem, fix=fix)
    file, row, line = fr.where(i)
    return IngestError(file=file, row=row, line=line, column=column, problem=problem, fix=fix)


def _require(fr: Frame, columns: tuple[str, ...]) -> None:
    for col in columns:
        if col not in fr.df.columns:
            raise _fail(fr, None, col, f"required column is missing (found: {', '.join(map(str, fr.df.columns))})",
                        f"add a '{col}' column (see docs/data-format.md)")


def _shown(value) -> str:
    """A value as the user wrote it: text quoted, numbers plain (not np.float64(2.5))."""
    return repr(value) if isinstance(value, str) else str(value)


def _blank(values: pd.Series) -> np.ndarray:
    """Missing, or text that is only whitespace: an empty cell however the file wrote it (CSV '  ', Parquet '' or
    null), for every kind of text column (object or pandas string dtype)."""
    missing = values.isna().to_numpy()
    if pd.api.types.is_object_dtype(values) or pd.api.types.is_string_dtype(values):
        missing = missing | (values.astype(str).str.strip() == "").to_numpy()
    return missing


def _ints(fr: Frame, column: str, what: str, raw: pd.Series | None = None) -> pd.Series:
    """Ids as int64, parsed exactly (no float round trip): digits, or a whole number of a float column (as Parquet
    stores an integer column with gaps) below 2**53; nothing outside int64 (PostgreSQL bigint)."""
    raw = fr.df[column] if raw is None else raw
    if not pd.api.types.is_numeric_dtype(raw):
        num = pd.to_numeric(raw, errors="coerce")
        if num.dtype == np.int64:  # the common case: all digits within int64, parsed exactly
            return num
    missing = _blank(raw)
    if missing.any():
        i = int(np.flatnonzero(missing)[0])
        raise _fail(fr, i, column, f"{what} is missing", f"give every row a {column}")
    if pd.api.types.is_integer_dtype(raw):
        big = (raw > INT64[1]).to_numpy() if raw.dtype == np.uint64 else np.zeros(len(raw), bool)
    elif pd.api.types.is_float_dtype(raw):
        bad = ~_whole(raw).to_numpy()
        if bad.any():
            i = int(np.flatnonzero(bad)[0])
            raise _fail(fr, i, column, f"{_shown(raw.iloc[i])} is not an exact integer {what}",
                        f"write {column} as a whole number (in Parquet as an integer column)")
        return raw.astype("int64")
    else:
        text = raw.astype(str).str.strip()
        bad = ~text.str.match(WHOLE).to_numpy()
        if bad.any():
            i = int(np.flatnonzero(bad)[0])
            raise _fail(fr, i, column, f"{_shown(raw.iloc[i])} is not an integer {what}",
                        f"write {column} as a whole number in digits (e.g. 8001)")
        digits = text.str.replace(r"\.0*$", "", regex=True)
        big = ~digits.map(lambda d: len(d) < 19 or INT64[0] <= int(d) <= INT64[1]).to_numpy()
    if big.any():
        i = int(np.flatnonzero(big)[0])
        raise _fail(fr, i, column, f"{_shown(raw.iloc[i])} does not fit a 64-bit {what}",
                    f"write {column} between {INT64[0]} and {INT64[1]} (PostgreSQL bigint)")
    return (raw if pd.api.types.is_integer_dtype(raw) else digits).astype("int64")


def _timestamps(fr: Frame, column: str, *, required: bool, now: pd.Timestamp) -> pd.Series:
    """Parse to UTC; naive times are taken as UTC. Missing (or blank) values become EPOCH unless required. Times
    after now + FUTURE_TOLERANCE, or before EARLIEST, are refused."""
    if column not in fr.df.columns:
        if required:
            _require(fr, (column,))
        return pd.Series(EPOCH, index=fr.df.index)
    raw = fr.df[column]
    missing = pd.Series(_blank(raw), index=raw.index)
    if pd.api.types.is_datetime64_any_dtype(raw):  # a native Parquet timestamp, in its own unit (year 3000 fits)
        ts = raw.dt.tz_localize("UTC") if raw.dt.tz is None else raw.dt.tz_convert("UTC")
    else:
        ts = _parse_times(fr, column, raw, ~missing, now)
    if missing.any():
        if required:
            i = int(np.flatnonzero(missing.to_numpy())[0])
            raise _fail(fr, i, column, "timestamp is missing", f"give every row a {column}")
        ts = ts.where(~missing, EPOCH)
    _in_range(fr, column, ts, now)
    return ts.astype("datetime64[ns, UTC]")


def _parse_times(fr: Frame, column: str, raw: pd.Series, ok: pd.Series, now: pd.Timestamp) -> pd.Series:
    """ISO-8601 text to UTC times (NaT where not ok); the first value that is not a time is refused, naming why."""
    ts = pd.Series(pd.NaT, index=raw.index, dtype="datetime64[ns, UTC]")
    text = raw[ok].astype(str).str.strip()
    try:
        ts[ok] = pd.to_datetime(text, utc=True, format="ISO8601", errors="coerce")
    except (ValueError, TypeError):
        ts[ok] = pd.to_datetime(text, utc=True, format="mixed", errors="coerce")
    bad = ok & ts.isna()
    if bad.any():
        i = int(np.flatnonzero(bad.to_numpy())[0])
        try:  # a valid time outside pandas' nanosecond range (1677-2262) parses alone, at a coarser unit
            alone = pd.Timestamp(str(raw.iloc[i]).strip())
            alone = alone.tz_localize("UTC") if alone.tzinfo is None else alone.tz_convert("UTC")
        except (ValueError, TypeError, OverflowError):
            alone = None
        if alone is not None and alone is not pd.NaT:
            _in_range(fr, column, pd.Series([alone], index=[raw.index[i]]), now)
        raise _fail(fr, i, column, f"{raw.iloc[i]!r} is not a timestamp",
                    "write ISO-8601, e.g. 2025-03-01T09:30:00Z (no zone means UTC)")
    return ts


def _in_range(fr: Frame, column: str, ts: pd.Series, now: pd.Timestamp) -> None:
    """Refuse a time after now + FUTURE_TOLERANCE (it would move the data's end) or before EARLIEST. `ts` is
    indexed by row position (the frames have a RangeIndex)."""
    latest = now + FUTURE_TOLERANCE
    for wrong, problem, fix in (
            (ts > latest, f"is in the future (after {latest:%Y-%m-%dT%H:%MZ}: now plus "
                          f"{FUTURE_TOLERANCE.days} day of tolerance for clock skew)",
             "correct the time (a typo in the year?) or load the row once it has happened (docs/data-format.md)"),
            (ts < EARLIEST, f"is before {EARLIEST:%Y-%m-%d}, the earliest time STAR stores",
             "correct the time, or leave the cell empty for 'since the beginning' where the column allows it")):
        wrong = wrong.to_numpy(dtype=bool)
        if wrong.any():
            first = int(np.flatnonzero(wrong)[0])
            raise _fail(fr, int(ts.index[first]), column, f"{ts.iloc[first].isoformat()} {problem}", fix)


def _no_nul(fr: Frame, column: str, values: pd.Series) -> None:
    """PostgreSQL text cannot hold NUL: COPY would cut the value there."""
    nul = (values.notna() & values.astype(str).str.contains("\x00", regex=False)).to_numpy()
    if nul.any():
        i = int(np.flatnonzero(nul)[0])
        raise _fail(fr, i, column, f"{str(values.iloc[i])[:60]!r} contains a NUL byte (\\x00)",
                    "remove the NUL characters from the value")


def _strings(fr: Frame, column: str, *, allowed: tuple[str, ...] | None = None,
             identifier: bool = False, max_length: int | None = None) -> pd.Series:
    raw = fr.df[column]
    values = raw.astype(str).str.strip()
    bad = _blank(raw)
    if bad.any():
        i = int(np.flatnonzero(bad)[0])
        raise _fail(fr, i, column, "value is missing", f"give every row a {column}")
    _no_nul(fr, column, values)
    if allowed is not None:
        wrong = ~values.isin(allowed)
        if wrong.any():
            i = int(np.flatnonzero(wrong.to_numpy())[0])
            raise _fail(fr, i, column, f"{values.iloc[i]!r} is not one of {', '.join(allowed)}",
                        f"use one of {', '.join(allowed)}")
    if identifier:
        wrong = ~values.str.match(IDENTIFIER)
        if wrong.any():
            i = int(np.flatnonzero(wrong.to_numpy())[0])
            raise _fail(fr, i, column, f"{values.iloc[i]!r} is not a lower-case identifier",
                        "use letters, digits and _ only, starting with a letter (e.g. has_skill)")
    if max_length is not None:
        wrong = values.str.len() > max_length
        if wrong.any():
            i = int(np.flatnonzero(wrong.to_numpy())[0])
            raise _fail(fr, i, column, f"{values.iloc[i]!r} is {len(values.iloc[i])} characters long; at most "
                        f"{max_length} fit the feature names made from it", f"shorten it to {max_length} characters")
    return values


def _no_duplicates(fr: Frame, df: pd.DataFrame, key: list[str], what: str) -> None:
    dup = df.duplicated(subset=key, keep=False)
    if dup.any():
        idx = np.flatnonzero(dup.to_numpy())
        first = idx[0]
        same = [j for j in idx if (df.iloc[j][key] == df.iloc[first][key]).all()]
        other = fr.where(same[1])
        values = ", ".join(f"{k}={df.iloc[first][k]}" for k in key)
        raise _fail(fr, int(first), None, f"duplicate {what} ({values}) also at {other[0]} row {other[1]}",
                    "keep one row per key")


def _whole(values: pd.Series) -> pd.Series:
    """Floats that are exact whole numbers: no fraction, below 2**53 (where float64 still counts in ones)."""
    return (values % 1 == 0) & (values.abs() < 2 ** 53)


def _categorical(values: pd.Series) -> pd.Series:
    """A categorical column as text, the same from Parquet as from CSV: empty (or blank) = missing; whole numbers
    of a float column (an integer column with gaps) without '.0'."""
    if pd.api.types.is_float_dtype(values):
        whole = values.notna() & _whole(values)
        text = values.astype(str).where(~whole, values[whole].astype("int64").astype(str) if whole.any() else "")
    else:
        text = values.astype(str)
    text = text.where(values.notna(), None).astype(object)
    blank = text.notna() & (text.astype(str).str.strip() == "")
    return text.where(~blank, None)


def _entities(fr: Frame, entity: str, now: pd.Timestamp) -> tuple[pd.DataFrame, pd.DataFrame]:
    """The entity's history rows, and which categorical cells are absent (their file has no such column)."""
    id_col = ID_COLUMN[entity]
    _require(fr, (id_col,))
    for col in fr.df.columns:
        if col in (id_col, "valid_from"):
            continue
        if not isinstance(col, str) or not IDENTIFIER.match(col) or col in RESERVED:
            raise _fail(fr, None, str(col), "is not usable as a feature name",
                        "rename it to a lower-case identifier (letters, digits, _) that is not one of "
                        + ", ".join(sorted(RESERVED)))
        if len(col) > MAX_FEATURE_NAME:
            raise _fail(fr, None, col, f"is {len(col)} characters long; a feature name has at most {MAX_FEATURE_NAME}",
                        f"rename it to at most {MAX_FEATURE_NAME} characters (training sets name the column "
                        f"{entity}_categorical_v<k>__<name>, and PostgreSQL cuts names at 63 bytes)")
    out = pd.DataFrame({id_col: _ints(fr, id_col, f"{entity} id"),
                        "valid_from": _timestamps(fr, "valid_from", required=False, now=now)})
    absent = pd.DataFrame(index=out.index)
    for col in fr.df.columns:
        if col not in (id_col, "valid_from"):
            out[col] = _categorical(fr.df[col])
            _no_nul(fr, col, out[col])
            absent[col] = fr.absent(col)
    _no_duplicates(fr, out, [id_col, "valid_from"], f"{entity} history key")
    return out, absent


def validate(frames: dict[str, Frame], *, known_ids: dict[str, set[int]] | None = None,
             now: pd.Timestamp | None = None) -> Marketplace:
    """Check every rule of docs/data-format.md; `known_ids` are the member/job ids already in the database, `now`
    the clock times are checked against (default: the current time)."""
    known_ids = known_ids or {"member": set(), "job": set()}
    now = pd.Timestamp.now(tz="UTC") if now is None else pd.Timestamp(now)
    members, members_absent = _entities(frames["members"], "member", now)
    jobs, jobs_absent = _entities(frames["jobs"], "job", now)
    ids = {"member": set(members["member_id"]) | known_ids["member"],
           "job": set(jobs["job_id"]) | known_ids["job"]}

    texts = pd.DataFrame(columns=["entity", "entity_id", "valid_from", "text"])
    if "texts" in frames:
        fr = frames["texts"]
        _require(fr, ("entity", "entity_id", "valid_from", "text"))
        texts = pd.DataFrame({"entity": _strings(fr, "entity", allowed=ENTITIES),
                              "entity_id": _ints(fr, "entity_id", "entity id"),
                              "valid_from": _timestamps(fr, "valid_from", required=True, now=now)})
        if fr.df["text"].isna().any():
            i = int(np.flatnonzero(fr.df["text"].isna().to_numpy())[0])
            raise _fail(fr, i, "text", "text is missing", "write the text, or an empty string for an empty profile")
        texts["text"] = fr.df["text"].astype(str)
        _no_nul(fr, "text", texts["text"])
        _check_refs(fr, texts["entity"], texts["entity_id"], ids, "entity_id")
        _no_duplicates(fr, texts, ["entity", "entity_id", "valid_from"], "text snapshot")

    attribute_edges, interactions = _edges(frames.get("edges"), ids, now)
    nodes = _nodes(frames.get("nodes"), attribute_edges)
    truth = None
    if "truth" in frames:
        fr = frames["truth"]
        _require(fr, ("member_id", "job_id", "event_timestamp", "utility", "outcome"))
        truth = pd.DataFrame({"member_id": _ints(fr, "member_id", "member id"),
                              "job_id": _ints(fr, "job_id", "job id"),
                              "event_timestamp": _timestamps(fr, "event_timestamp", required=True, now=now),
                              "utility": _floats(fr, "utility"),
                              "outcome": _strings(fr, "outcome")})
        for entity in ENTITIES:
            column = ID_COLUMN[entity]
            _check_refs(fr, pd.Series(entity, index=truth.index), truth[column], ids, column)
        _no_duplicates(fr, truth, ["member_id", "job_id", "event_timestamp"], "exposure")
    return Marketplace(members=members, jobs=jobs, texts=texts, attribute_edges=attribute_edges,
                       interactions=interactions, nodes=nodes, truth=truth,
                       absent={"member": members_absent, "job": jobs_absent})


def _floats(fr: Frame, column: str) -> pd.Series:
    blank = _blank(fr.df[column])
    if blank.any():
        i = int(np.flatnonzero(blank)[0])
        raise _fail(fr, i, column, "value is missing", f"give every row a {column}")
    num = pd.to_numeric(fr.df[column], errors="coerce").astype(float)
    bad = ~np.isfinite(num.to_numpy())
    if bad.any():
        i = int(np.flatnonzero(bad)[0])
        raise _fail(fr, i, column, f"{fr.df[column].iloc[i]!r} is not a number",
                    f"write {column} as a number, e.g. 0.5")
    return num


def _check_refs(fr: Frame, entity: pd.Series, entity_id: pd.Series, ids: dict[str, set[int]], column: str) -> None:
    for kind in ENTITIES:
        mask = (entity == kind).to_numpy()
        unknown = mask & ~entity_id.isin(list(ids[kind])).to_numpy()
        if unknown.any():
            i = int(np.flatnonzero(unknown)[0])
            raise _fail(fr, i, column, f"{kind} {entity_id.iloc[i]} is unknown",
                        f"add {kind} {entity_id.iloc[i]} to {kind}s.* or remove this row")


def _edges(fr: Frame | None, ids: dict[str, set[int]], now: pd.Timestamp) -> tuple[pd.DataFrame, pd.DataFrame]:
    attr_cols = ["entity", "entity_id", "relation", "node_type", "node_id", "event_timestamp"]
    if fr is None:
        return (pd.DataFrame(columns=attr_cols),
                pd.DataFrame(columns=["member_id", "job_id", "relation", "event_timestamp"]))
    _require(fr, ("src_type", "src_id", "relation", "dst_type", "dst_id"))
    src_type = _strings(fr, "src_type", allowed=ENTITIES)
    relation = _strings(fr, "relation", identifier=True, max_length=MAX_RELATION_NAME)
    reverse = relation.str.startswith("rev_")
    if reverse.any():
        i = int(np.flatnonzero(reverse.to_numpy())[0])
        raise _fail(fr, i, "relation", f"{relation.iloc[i]!r} starts with 'rev_', the prefix of the reverse edges the "
                    "graph adds", f"rename it, e.g. to {'reverse_' + relation.iloc[i][4:]!r}")
    dst_type = _strings(fr, "dst_type", identifier=True)
    dst_id = _strings(fr, "dst_id")
    src_id = _ints(fr, "src_id", "member/job id")
    has_ts = "event_timestamp" in fr.df.columns
    ts = _timestamps(fr, "event_timestamp", required=False, now=now)
    missing_ts = _blank(fr.df["event_timestamp"]) if has_ts else np.ones(len(fr.df), bool)

    interaction = dst_type.isin(ENTITIES).to_numpy()
    wrong = interaction & ~((src_type == "member") & (dst_type == "job")).to_numpy()
    if wrong.any():
        i = int(np.flatnonzero(wrong)[0])
        raise _fail(fr, i, "dst_type", f"{src_type.iloc[i]} -> {dst_type.iloc[i]} edges are not supported",
                    "interaction edges go member -> job; attribute edges go member|job -> an attribute type")
    no_time = interaction & missing_ts
    if no_time.any():
        i = int(np.flatnonzero(no_time)[0])
        raise _fail(fr, i, "event_timestamp", "an interaction edge has no event time",
                    "give every member -> job edge its event_timestamp")
    _check_refs(fr, src_type, src_id, ids, "src_id")
    job_ids = _ints(fr, "dst_id", "job id", dst_id.where(interaction, "0"))
    _check_refs(fr, dst_type.where(interaction, "none"), job_ids, ids, "dst_id")
    dst_id = dst_id.where(~interaction, job_ids.astype(str))  # 08001 and 8001 are one job, so one edge

    edges = pd.DataFrame({"src_type": src_type, "src_id": src_id, "relation": relation, "dst_type": dst_type,
                          "dst_id": dst_id, "event_timestamp": ts})
    _no_duplicates(fr, edges, list(edges.columns), "edge")
    inter = edges[interaction]
    interactions = pd.DataFrame({"member_id": inter["src_id"].to_numpy(),
                                 "job_id": job_ids[interaction].to_numpy(),
                                 "relation": inter["relation"].to_numpy(),
                                 "event_timestamp": inter["event_timestamp"].to_numpy()})
    attr = edges[~interaction]
    attribute_edges = pd.DataFrame({"entity": attr["src_type"].to_numpy(), "entity_id": attr["src_id"].to_numpy(),
                                    "relation": attr["relation"].to_numpy(), "node_type": attr["dst_type"].to_numpy(),
                                    "node_id": attr["dst_id"].to_numpy(),
                                    "event_timestamp": attr["event_timestamp"].to_numpy()})
    for df in (interactions, attribute_edges):
        df["event_timestamp"] = pd.to_datetime(df["event_timestamp"], utc=True)
    return attribute_edges, interactions


def _nodes(fr: Frame | None, attribute_edges: pd.DataFrame) -> pd.DataFrame:
    """Listed nodes plus every node an edge names (labelled by its id when not listed)."""
    listed = pd.DataFrame(columns=["node_type", "node_id", "label"])
    if fr is not None:
        _require(fr, ("node_type", "node_id"))
        listed = pd.DataFrame({"node_type": _strings(fr, "node_type", identifier=True),
                               "node_id": _strings(fr, "node_id")})
        label = fr.df["label"] if "label" in fr.df.columns else pd.Series(None, index=fr.df.index)
        # an empty (or blank) label is the id itself, which never overwrites a stored label
        listed["label"] = label.where(~_blank(label), listed["node_id"]).astype(str)
        _no_nul(fr, "label", listed["label"])
        _no_duplicates(fr, listed, ["node_type", "node_id"], "node")
    used = attribute_edges[["node_type", "node_id"]].drop_duplicates()
    extra = used.merge(listed[["node_type", "node_id"]], how="left", indicator=True)
    extra = extra[extra["_merge"] == "left_only"].drop(columns="_merge")
    extra["label"] = extra["node_id"]
    return pd.concat([listed, extra], ignore_index=True)
