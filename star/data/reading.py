"""Reading a marketplace directory (docs/data-format.md) into one frame per input kind, refusing what pandas would
let pass unnoticed: non-UTF-8 bytes, a repeated column, rows with too few or too many fields, NUL bytes.

    DIR/members.*  DIR/jobs.*  ...  (.csv, .csv.gz, .parquet; several parts of one kind are concatenated)
        -> read_dir() -> {kind: Frame (rows + which file and row each came from)} -> star.data.format.validate()
"""

from __future__ import annotations

import codecs
import csv
import gzip
import io
import re
import zlib
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from star.errors import IngestError

KINDS = ("members", "jobs", "texts", "edges", "nodes", "truth")
SUFFIXES = (".csv", ".csv.gz", ".parquet")


@dataclass(frozen=True)
class Frame:
    """One input kind read from its file(s), with where each row came from."""

    df: pd.DataFrame
    files: list[str]
    source: np.ndarray  # index into files per row
    rows: np.ndarray  # 1-based data row within its file
    lines: np.ndarray | None = None  # line of the file a CSV row starts on (0: not a CSV row); texts may span lines
    columns: list[frozenset] | None = None  # the columns of each file (None: every file has every column)

    def absent(self, column: str) -> np.ndarray:
        """Per row: its file has no such column (parts of one kind may differ). Concatenating fills those cells
        with NaN, which would read as an empty cell; absent means 'not given', so a load keeps the stored value."""
        if self.columns is None:
            return np.zeros(len(self.df), dtype=bool)
        has = np.array([column in cols for cols in self.columns], dtype=bool)
        return ~has[self.source] if len(self.source) else np.zeros(0, dtype=bool)

    def where(self, i: int) -> tuple[str, int, int | None]:
        """(file, data row, line or None) of row i."""
        line = int(self.lines[i]) if self.lines is not None and self.lines[i] else None
        return self.files[self.source[i]], int(self.rows[i]), line


def _read_one(path: Path) -> tuple[pd.DataFrame, np.ndarray]:
    """The file's rows, and the line each starts on (zeros for Parquet)."""
    if path.name.endswith(".parquet"):
        try:
            df = pd.read_parquet(path)
        except Exception as exc:
            raise IngestError(file=path.name, problem=f"cannot be read ({type(exc).__name__}: {exc})",
                              fix="write it as CSV with a header row or as Parquet") from exc
        if df.columns.duplicated().any():
            col = str(df.columns[df.columns.duplicated()][0])
            raise IngestError(file=path.name, column=col, problem="appears twice in the file's columns",
                              fix="rename or remove one of the two columns")
        return df, np.zeros(len(df), dtype=np.int64)
    text = _decode(path)
    lines = _check_csv_shape(path.name, text)
    try:
        if path.name.startswith("texts"):  # an empty text cell is an empty text, as "" is in Parquet
            df = pd.read_csv(io.StringIO(text), dtype=str, keep_default_na=False)
            df = df.replace({c: {"": None} for c in df.columns if c != "text"})
        else:
            df = pd.read_csv(io.StringIO(text), dtype=str, keep_default_na=False, na_values=[""])
    except Exception as exc:
        raise IngestError(file=path.name, problem=f"cannot be read ({type(exc).__name__}: {exc})",
                          fix="write it as CSV with a header row or as Parquet") from exc
    return df, (lines if len(lines) == len(df) else np.arange(2, len(df) + 2))  # (pandas skipped something)


def _decode(path: Path) -> str:
    try:
        data = path.read_bytes()
        if path.name.endswith(".gz"):
            data = gzip.decompress(data)
    except (OSError, EOFError, zlib.error) as exc:
        raise IngestError(file=path.name, problem=f"cannot be read ({type(exc).__name__}: {exc})",
                          fix="write it as CSV with a header row (gzip-compressed as .csv.gz) or as Parquet") from exc
    if data.startswith(codecs.BOM_UTF8):
        data = data[len(codecs.BOM_UTF8):]
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as exc:
        line = data.count(b"\n", 0, exc.start) + 1
        raise IngestError(file=path.name, problem=f"is not UTF-8 text (byte 0x{data[exc.start]:02x} on line {line})",
                          fix="save the file as UTF-8 (e.g. 'CSV UTF-8' in a spreadsheet, or "
                              "iconv -f latin1 -t utf-8)") from exc


def _check_csv_shape(name: str, text: str) -> np.ndarray:
    """Refuse what pandas would let pass: a repeated column name (renamed 'x.1'), a row with fewer fields than the
    header (padded with empty values), one with more (an error, or in the first row silently the index) and a NUL
    byte (pandas cuts the value there). Returns the line each data row starts on."""
    csv.field_size_limit(max(csv.field_size_limit(), 2 ** 31 - 1))  # long texts are fine
    nul = "\x00" in text
    reader = csv.reader(io.StringIO(text, newline=""))
    header = next(reader, None)
    if header is None:
        return np.zeros(0, dtype=np.int64)  # an empty file: pandas says so
    seen: dict[str, int] = {}
    for pos, col in enumerate(header, start=1):
        if col and col in seen:
            raise IngestError(file=name, column=col, problem=f"appears twice in the header (fields {seen[col]} "
                              f"and {pos})", fix="rename or remove one of the two columns")
        seen.setdefault(col, pos)
    row, end, starts = 0, reader.line_num, []
    for record in reader:
        start, end = end + 1, reader.line_num
        if not record or (len(record) == 1 and not record[0].strip()):
            continue  # a blank line, skipped as pandas does
        row += 1
        starts.append(start)
        if len(record) < len(header):
            raise IngestError(file=name, row=row, line=start, problem=f"has {len(record)} fields, the header has "
                              f"{len(header)}", fix="add the missing fields (an empty value is nothing between "
                              "two commas)")
        if len(record) > len(header):
            raise IngestError(file=name, row=row, line=start, problem=f"has {len(record)} fields, the header has "
                              f"{len(header)}", fix='remove the extra fields, or quote a value that holds a comma '
                              '("a, b")')
        if nul and any("\x00" in value for value in record):
            col = next(c for c, value in zip(header, record) if "\x00" in value)
            raise IngestError(file=name, row=row, line=start, column=col, problem="the value contains a NUL byte "
                              "(\\x00)", fix="remove the NUL characters from the value")
    return np.asarray(starts, dtype=np.int64)


def read_dir(directory: str | Path) -> dict[str, Frame]:
    """Read every input file of a directory, concatenating several files of one kind (members.csv, members-2.csv)."""
    directory = Path(directory)
    if not directory.is_dir():
        raise IngestError(file=str(directory), problem="is not a directory",
                          fix="pass the directory holding members.*, jobs.*, texts.*, edges.*")
    found: dict[str, Frame] = {}
    for kind in KINDS:
        pattern = re.compile(rf"^{kind}([._-][^/]*)?$")
        paths = sorted(p for p in directory.iterdir()
                       if p.is_file() and pattern.match(p.name) and p.name.endswith(SUFFIXES))
        if not paths:
            continue
        read = [_read_one(p) for p in paths]
        frames = [f for f, _ in read]
        df = pd.concat(frames, ignore_index=True) if len(frames) > 1 else frames[0].reset_index(drop=True)
        source = np.concatenate([np.full(len(f), i) for i, f in enumerate(frames)]) if frames else np.array([])
        rows = np.concatenate([np.arange(1, len(f) + 1) for f in frames])
        found[kind] = Frame(df, [p.name for p in paths], source.astype(int), rows,
                            np.concatenate([lines for _, lines in read]), [frozenset(f.columns) for f in frames])
    for kind in ("members", "jobs"):
        if kind not in found:
            raise IngestError(file=f"{directory}/{kind}.*", problem="not found",
                              fix=f"add {kind}.csv or {kind}.parquet (see docs/data-format.md)")
    return found


def frame(df: pd.DataFrame, name: str) -> Frame:
    """Wrap an in-memory frame (e.g. the synthetic marketplace) so it validates like a file."""
    df = df.reset_index(drop=True)
    return Frame(df, [name], np.zeros(len(df), dtype=int), np.arange(1, len(df) + 1))
