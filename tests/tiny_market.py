"""A tiny hand-written marketplace in the input format, for tests that need exact, known values."""

from __future__ import annotations

from pathlib import Path

import pandas as pd


def frames() -> dict[str, pd.DataFrame]:
    return {
        "members": pd.DataFrame({
            "member_id": [1, 1, 2],
            "valid_from": ["2025-01-01T00:00:00Z", "2025-03-01T00:00:00Z", ""],
            "seniority": ["junior", "senior", "mid"],
            "location": ["berlin", "berlin", "paris"],
        }),
        "jobs": pd.DataFrame({
            "job_id": [10, 11],
            "valid_from": ["2025-01-05T00:00:00Z", "2025-02-01T00:00:00Z"],
            "seniority": ["senior", "junior"],
        }),
        "texts": pd.DataFrame({
            "entity": ["member", "member", "member", "job", "job"],
            "entity_id": [1, 1, 2, 10, 11],
            "valid_from": ["2025-01-01T00:00:00Z", "2025-03-01T00:00:00Z", "2025-01-01T00:00:00Z",
                           "2025-01-05T00:00:00Z", "2025-02-01T00:00:00Z"],
            "text": ["Junior data analyst, SQL", "Senior data analyst, SQL, Python", "Nurse",
                     "Senior analyst wanted", "Junior nurse"],
        }),
        "edges": pd.DataFrame({
            "src_type": ["member", "member", "member", "job", "member", "member", "member"],
            "src_id": ["1", "1", "1", "10", "1", "2", "2"],
            "relation": ["has_skill", "has_skill", "has_title", "requires_skill", "apply", "dismiss", "apply"],
            "dst_type": ["skill", "skill", "title", "skill", "job", "job", "job"],
            "dst_id": ["sql", "python", "analyst", "sql", "10", "10", "11"],
            "event_timestamp": ["", "2025-03-01T00:00:00Z", "", "", "2025-02-15T00:00:00Z",
                                "2025-02-16T00:00:00Z", "2025-02-20T00:00:00Z"],
        }),
    }


def write(directory: Path, data: dict[str, pd.DataFrame] | None = None, fmt: str = "csv") -> Path:
    directory.mkdir(parents=True, exist_ok=True)
    for kind, df in (data or frames()).items():
        if fmt == "csv":
            df.to_csv(directory / f"{kind}.csv", index=False)
        else:
            df.to_parquet(directory / f"{kind}.parquet", index=False)
    return directory


def nodes() -> pd.DataFrame:
    """Labels for some of the attribute nodes the edges name (not part of frames(): add it where a test needs it)."""
    return pd.DataFrame({"node_type": ["skill", "skill"], "node_id": ["sql", "python"], "label": ["SQL", "Python"]})


def truth() -> pd.DataFrame:
    """The hidden utility of two exposures (not part of frames(): add it where a test needs it)."""
    return pd.DataFrame({"member_id": [1, 2], "job_id": [10, 11],
                         "event_timestamp": ["2025-02-15T00:00:00Z", "2025-02-20T00:00:00Z"],
                         "utility": ["0.8", "0.3"], "outcome": ["apply", "apply"]})
