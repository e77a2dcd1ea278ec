"""Compact ESCO v1.1.1 / O*NET 29.2 subset shipped with STAR (see README.md in this folder).

    occupations.csv.gz ─┬─ alt_titles.csv.gz           (occ_id -> other titles)
                        ├─ occupation_skills.csv.gz    (occ_id -> skill_id, essential|optional|technology)
                        ├─ related_occupations.csv.gz  (occ_id -> related_occ_id, ranked)
                        └─ tasks.csv.gz                (occ_id -> O*NET core task sentences)
    skills.csv.gz                                      (skill_id -> label, alt labels, type)

Reads only the files next to this module; the raw dumps are needed only by `build.py`.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass
from pathlib import Path

import pandas as pd

_DIR = Path(__file__).resolve().parent

# string columns stay strings ("" for empty), the few numeric columns get explicit dtypes
_DTYPES: dict[str, dict[str, str]] = {
    "occupations": {"job_zone": "int64"},
    "alt_titles": {},
    "skills": {},
    "occupation_skills": {},
    "related_occupations": {"rank": "int64"},
    "tasks": {"task_id": "int64"},
}


@dataclass(frozen=True)
class Taxonomy:
    """The shipped taxonomy subset, one DataFrame per file."""

    occupations: pd.DataFrame  # occ_id, label, isco_group(+_label), isco_major(+_label), job_zone, description, ...
    alt_titles: pd.DataFrame  # occ_id, title, source (esco | onet)
    skills: pd.DataFrame  # skill_id, label, alt_labels ("|"-joined), skill_type, reuse_level, source
    occupation_skills: pd.DataFrame  # occ_id, skill_id, relation (essential | optional | technology)
    related_occupations: pd.DataFrame  # occ_id, related_occ_id, source (onet | isco_unit_group), rank
    tasks: pd.DataFrame  # occ_id, task_id, task


def _read(name: str) -> pd.DataFrame:
    dtypes = _DTYPES[name]
    frame = pd.read_csv(_DIR / f"{name}.csv.gz", dtype=str, keep_default_na=False)
    return frame.astype(dtypes) if dtypes else frame


@functools.lru_cache(maxsize=1)
def load_taxonomy() -> Taxonomy:
    """Load the shipped taxonomy subset (cached: callers must not mutate the frames)."""
    return Taxonomy(**{name: _read(name) for name in _DTYPES})


__all__ = ["Taxonomy", "load_taxonomy"]
