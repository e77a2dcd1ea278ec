"""COPY helpers shared by the marketplace writer and the offline store."""

from __future__ import annotations

import warnings
from typing import Iterable

import pandas as pd


def py_values(series: pd.Series) -> list:
    """Column values as Python objects psycopg can COPY (datetimes, ints, str, None)."""
    if pd.api.types.is_datetime64_any_dtype(series):
        with warnings.catch_warnings():  # pandas warns the return type will become a Series; list() takes both
            warnings.simplefilter("ignore", FutureWarning)
            return list(series.dt.to_pydatetime())
    if pd.api.types.is_integer_dtype(series):
        return series.astype("int64").tolist()
    return series.tolist()


def rows(df: pd.DataFrame, columns: list[str] | None = None) -> Iterable[tuple]:
    columns = list(df.columns) if columns is None else columns
    return zip(*(py_values(df[c]) for c in columns)) if len(df) else iter(())
