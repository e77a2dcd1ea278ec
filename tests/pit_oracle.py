"""An independent point-in-time oracle: what a training row should see, computed in pandas from the raw tables."""

from __future__ import annotations

import pandas as pd

from star import db


def _utc(s: pd.Series) -> pd.Series:
    return pd.to_datetime(s, utc=True).astype("datetime64[ns, UTC]")


def _asof(labels: pd.DataFrame, history: pd.DataFrame, key: str) -> pd.DataFrame:
    """For each label row, the history row with the latest valid_from <= event_timestamp (by created on ties)."""
    left = labels.reset_index().rename(columns={"index": "_row"})
    left["event_timestamp"] = _utc(left["event_timestamp"])
    left = left.sort_values("event_timestamp")
    history = history.assign(valid_from=_utc(history["valid_from"]), created=_utc(history["created"]))
    right = history.sort_values(["valid_from", "created"]).drop_duplicates([key, "valid_from"], keep="last")
    right = right.sort_values("valid_from")
    out = pd.merge_asof(left, right, left_on="event_timestamp", right_on="valid_from", by=key,
                        direction="backward", allow_exact_matches=True)
    return out.sort_values("_row").set_index("_row")


def expected(target, labels: pd.DataFrame) -> dict[str, pd.Series]:
    """column name in the training set -> the value valid at each label's time."""
    out: dict[str, pd.Series] = {}
    with db.connect(target) as conn:
        versions = dict(conn.execute(
            "SELECT family, max(version) FROM star.embedding_versions GROUP BY family").fetchall())
        for entity, key in (("member", "member_id"), ("job", "job_id")):
            hist = pd.DataFrame(conn.execute(
                f"SELECT {key}, valid_from, created, attrs FROM star.{entity}_history").fetchall(),
                columns=[key, "valid_from", "created", "attrs"])
            got = _asof(labels, hist, key)
            view = f"{entity}_categorical_v{versions[f'{entity}_categorical']}"
            for col in sorted({k for a in hist["attrs"] for k in a}):
                out[f"{view}__{col}"] = got["attrs"].map(lambda a, c=col: a.get(c) if isinstance(a, dict) else None)

            texts = pd.DataFrame(conn.execute(
                "SELECT entity_id, valid_from, created, text FROM star.text_snapshots WHERE entity = %s",
                (entity,)).fetchall(), columns=[key, "valid_from", "created", "text"])
            out[f"{entity}_text"] = _asof(labels, texts, key)["text"]

            edges = pd.DataFrame(conn.execute(
                "SELECT entity_id, relation, node_id, event_timestamp FROM star.attribute_edges WHERE entity = %s",
                (entity,)).fetchall(), columns=[key, "relation", "node_id", "event_timestamp"])
            view = f"{entity}_ids_v{versions.get(f'{entity}_ids', 0)}"
            for relation in sorted(edges["relation"].unique()):
                rel = edges[edges["relation"] == relation]
                by_key = {k: g for k, g in rel.groupby(key)}
                values = []
                for k, t in zip(labels[key], _utc(labels["event_timestamp"])):
                    g = by_key.get(k)
                    seen = set() if g is None else set(g.loc[_utc(g["event_timestamp"]) <= t, "node_id"])
                    values.append(seen)
                out[f"{view}__{relation}_ids"] = pd.Series(values, index=labels.index)
    return out


def as_set(value) -> set:
    if value is None or (isinstance(value, float) and pd.isna(value)):
        return set()
    return set(value)


def assert_no_time_travel(target, df: pd.DataFrame) -> int:
    """Compare every oracle column of every row; return the number of cells checked."""
    labels = df[["member_id", "job_id", "event_timestamp"]].copy()
    checked = 0
    for column, want in expected(target, labels).items():
        assert column in df.columns, f"training set lacks {column}"
        got = df[column]
        for i in range(len(df)):
            if column.endswith("_ids"):
                ok = as_set(got.iloc[i]) == want.iloc[i]
            else:
                w, g = want.iloc[i], got.iloc[i]
                ok = (pd.isna(w) and pd.isna(g)) if (w is None or (isinstance(w, float) and pd.isna(w))) else g == w
            assert ok, (f"row {i} ({labels.iloc[i].to_dict()}): {column} = {got.iloc[i]!r}, "
                        f"but the value valid at that time is {want.iloc[i]!r}")
            checked += 1
    return checked
